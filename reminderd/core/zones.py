"""IANA time zones: the one check of a zone name, and wall-clock times across DST changes.

A naive wall-clock time can name two instants (the repeated hour of a fall-back day) or
none (the hour a spring-forward skips). Schedules and quiet hours resolve both cases the
same way: a repeated time means its first instant, a skipped one the first instant after
the gap, i.e. the moment the clock jumps over it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from reminderd.errors import ScheduleError

MAX_ZONE_NAME = 64  # longer than any tzdata name: a longer one is never looked up
IANA_HINT = "expected an IANA name such as Europe/Berlin"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def zone_named(name: object) -> ZoneInfo | None:
    """The IANA zone called ``name``; None for anything that is not a known zone name."""
    if not isinstance(name, str) or not name or len(name) > MAX_ZONE_NAME:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def load_zone(tz: str) -> ZoneInfo:
    """The IANA zone named ``tz``; ``ScheduleError`` for a name tzdata does not know."""
    zone = zone_named(tz)
    if zone is None:
        raise ScheduleError(f"unknown time zone {tz!r}")
    return zone


def check_zone_name(name: str) -> str:
    """``name`` if it is a known zone; a ``ValueError`` with the hint for settings validators."""
    if zone_named(name) is None:
        raise ValueError(f"unknown time zone {name!r} ({IANA_HINT})")
    return name


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime, in exact integer arithmetic."""
    return (moment - _EPOCH) // _MS


def wall_to_ms(wall: datetime, zone: ZoneInfo) -> int:
    """The instant of a naive wall-clock time in ``zone``: the first of a repeated one, and
    the end of the gap for one that a spring-forward transition skips.

    ``OverflowError`` when that instant is past the end of year 9999 in UTC.
    """
    first, second = _folds_ms(wall, zone)
    if first <= second:
        return first
    return gap_end_ms(second, first, zone)


def repeat_ms(wall: datetime, zone: ZoneInfo) -> int | None:
    """The second instant of a wall-clock time a fall-back repeats; None for any other."""
    first, second = _folds_ms(wall, zone)
    return second if second > first else None


def _folds_ms(wall: datetime, zone: ZoneInfo) -> tuple[int, int]:
    """``wall`` read with fold 0 and fold 1 (equal unless the offset changes around it)."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    return to_ms(first), to_ms(second)


def gap_end_ms(before_ms: int, after_ms: int, zone: ZoneInfo) -> int:
    """The transition instant in ``(before_ms, after_ms]`` where the zone's offset becomes
    that of ``after_ms``: the first valid instant after a gap. Bisected to the second, as
    tzdata is."""
    low_s, high_s = before_ms // 1000, -(-after_ms // 1000)
    target = _offset(high_s, zone)
    while high_s - low_s > 1:
        mid_s = (low_s + high_s) // 2
        if _offset(mid_s, zone) == target:
            high_s = mid_s
        else:
            low_s = mid_s
    return high_s * 1000


def _offset(epoch_s: int, zone: ZoneInfo) -> timedelta | None:
    return datetime.fromtimestamp(epoch_s, zone).utcoffset()
