"""Human durations (``500ms``, ``30s``, ``5m``, ``24h``, ``7d``) to milliseconds."""

from __future__ import annotations

import re

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration_ms(text: str | int | float) -> int:
    """Parse ``text`` into whole milliseconds; raises ``ValueError`` with what was expected.

    Compound values such as ``1h30m`` are accepted; a bare number means seconds, as in
    most ops tools. Negative and empty durations are refused.
    """
    if isinstance(text, bool):
        raise ValueError("expected a duration such as 500ms, 30s, 5m or 24h")
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError("duration must not be negative")
        return round(text * 1000)
    raw = text.strip().lower()
    try:
        seconds = float(raw)
    except ValueError:
        pass
    else:
        if seconds < 0 or seconds != seconds:
            raise ValueError(f"duration {text!r} must not be negative")
        return round(seconds * 1000)
    pos, total = 0, 0.0
    for match in _PART.finditer(raw):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS_MS[match.group(2)]
        pos = match.end()
    if pos != len(raw) or not raw:
        raise ValueError(f"invalid duration {text!r}: expected e.g. 500ms, 30s, 5m, 24h, 7d")
    return round(total)


def format_ms(ms: int) -> str:
    """Render milliseconds compactly for humans (``1h2m3s``, ``250ms``)."""
    if ms < 0:
        return "-" + format_ms(-ms)
    if ms < 1000:
        return f"{ms}ms"
    parts: list[str] = []
    seconds = ms // 1000
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)
