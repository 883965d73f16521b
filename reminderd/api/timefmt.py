"""Instants and spans as ``status``, ``list`` and ``show`` print them (UTC, two units)."""

from __future__ import annotations

from datetime import UTC, datetime

from reminderd.core.durations import format_ms


def format_instant(ms: int) -> str:
    """UTC ISO-8601 with a ``Z`` (``2026-11-23T17:00:00Z``); milliseconds only when not zero."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{ms % 1000:03d}Z" if ms % 1000 else f"{text}Z"


def format_span(ms: int) -> str:
    """A duration in its two largest units (``3m20s``, ``2d4h``); below a second, ``ms``."""
    if ms < 1000:
        return f"{ms}ms"
    text = format_ms(ms - ms % 1000)
    units = [part for part in _split_units(text) if part]
    return "".join(units[:2])


def _split_units(text: str) -> list[str]:
    parts, current = [], ""
    for ch in text:
        current += ch
        if ch.isalpha():
            parts.append(current)
            current = ""
    return parts


def format_relative(target_ms: int, now_ms: int) -> str:
    """``in 9s``, ``3m ago`` or ``now`` (within a second)."""
    delta_ms = target_ms - now_ms
    if abs(delta_ms) < 1000:
        return "now"
    return f"in {format_span(delta_ms)}" if delta_ms > 0 else f"{format_span(-delta_ms)} ago"


def format_when(target_ms: int, now_ms: int) -> str:
    """``2026-11-23T17:00:00Z (in 9s)``."""
    return f"{format_instant(target_ms)} ({format_relative(target_ms, now_ms)})"
