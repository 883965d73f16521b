"""Quiet hours: the instant an occurrence due inside a rule's daily window is deferred to.

Pure functions of (due instant, window, zone), independent of any processor, so the
pipeline applies them before processors run. The window ``[start, end)`` is local wall
time in the user's zone; ``start > end`` means it crosses midnight (``21:00``-``08:00``);
``start == end`` is an empty window. DST is handled on the wall clock: an end time that
a spring-forward gap skips defers to the moment the clock jumps over it, and an end time
that a fall-back repeats defers to its first occurrence after the due instant.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from reminderd.core.zones import repeat_ms, wall_to_ms
from reminderd.core.zones import zone_named as zone_named  # re-exported for pipeline.gates
from reminderd.errors import ConfigError


class QuietWindow(Protocol):
    """A rule's daily window as configured (``config.model.QuietHours`` is one)."""

    @property
    def start(self) -> str: ...  # "HH:MM", local wall time
    @property
    def end(self) -> str: ...  # "HH:MM", exclusive
    @property
    def tz_field(self) -> str: ...  # payload / lookup field naming the user's zone
    @property
    def default_tz(self) -> str: ...  # IANA zone when the user names none


def user_zone(candidates: Iterable[object], default_tz: str) -> ZoneInfo:
    """The first valid zone among ``candidates`` (payload value, lookup hash value), else the default.

    A producer's bad zone name must not stop the reminder, so it is passed over; a bad
    configured default is a configuration error.
    """
    for name in candidates:
        zone = zone_named(name)
        if zone is not None:
            return zone
    zone = zone_named(default_tz)
    if zone is None:
        raise ConfigError(f"unknown time zone {default_tz!r}")
    return zone


def quiet_zone(
    payload: Mapping[str, Any], window: QuietWindow, lookup: Mapping[str, Any] | None = None
) -> ZoneInfo:
    """The zone a rule's quiet hours are read in: payload ``tz_field``, lookup hash, ``default_tz``."""
    found = [payload.get(window.tz_field)]
    if lookup is not None:
        found.append(lookup.get(window.tz_field))
    return user_zone(found, window.default_tz)


def defer_until_ms(due_ms: int, window: QuietWindow, tz: ZoneInfo) -> int | None:
    """The end of the quiet window ``due_ms`` falls in (epoch ms), or None when outside it."""
    start, end = _hhmm(window.start), _hhmm(window.end)
    if start == end:
        return None
    wall = datetime.fromtimestamp(due_ms / 1000, tz).replace(tzinfo=None)
    now = wall.time()
    if start < end:
        if not start <= now < end:
            return None
        end_day = wall.date()
    else:
        if end <= now < start:
            return None
        end_day = wall.date() + timedelta(days=1) if now >= start else wall.date()
    return _first_reaching_ms(datetime.combine(end_day, end), tz, due_ms)


def _hhmm(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def _first_reaching_ms(wall: datetime, tz: ZoneInfo, after_ms: int) -> int:
    """The first instant after ``after_ms`` at which the local clock reads ``wall`` or later."""
    first, second = wall_to_ms(wall, tz), repeat_ms(wall, tz)
    return second if second is not None and first <= after_ms else first
