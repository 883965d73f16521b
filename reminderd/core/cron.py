"""The one module that imports APScheduler 3 (untyped); the rest of reminderd sees typed functions.

APScheduler serves one purpose here: ``CronTrigger`` enumerates the wall-clock times that
match a crontab expression. The module is pure (no I/O, no clock): the daemon's periodic
jobs are plain loops of its task group (``reminderd.daemon.periodic``), and ``every``
schedules are arithmetic (``reminderd.core.recurrence``).

Cron matches are enumerated in UTC, as naive wall-clock times, and ``reminderd.core.recurrence``
resolves them in the schedule's zone. Given a DST zone directly, CronTrigger 3.11 returns the
repeated hour of a fall-back day twice (and, asked again from the second one, returns that
same time forever). It also places a match that falls in a spring-forward gap at the old
offset (02:30 becomes 03:30). UTC has no repeated or missing wall times, so there its field
arithmetic is exact. Crontab meaning is restored where APScheduler differs: day-of-week 0
(and 7) is Sunday, not Monday, and a restricted day-of-month and day-of-week match when
*either* matches, as in Vixie cron.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from apscheduler.triggers.cron import CronTrigger

from reminderd.core.zones import load_zone
from reminderd.errors import ScheduleError

_FIELDS = ("minute", "hour", "day", "month", "weekday")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab order: 0 and 7 are Sunday
_WEEKDAY_PART = re.compile(r"(?P<first>\*|\d+|[a-z]{3})(?:-(?P<last>\d+|[a-z]{3}))?(?:/(?P<step>\d+))?")
_APS_PREFIX = re.compile(r"^Error validating expression '[^']*': ")
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# Any satisfiable five-field expression matches within 28 years of any date (the calendar repeats).
_PROBE_WALL = datetime(2000, 1, 1)


def validate_cron(expr: str, tz: str) -> None:
    """Raise ``ScheduleError`` unless ``expr`` parses, can ever match, and ``tz`` is a known zone."""
    load_zone(tz)
    if cron_next_wall(expr, _PROBE_WALL) is None:
        raise ScheduleError(f"invalid cron expression {expr!r}: it never matches a date")


def cron_next_wall(expr: str, after_wall: datetime) -> datetime | None:
    """The first naive wall-clock time strictly after ``after_wall`` that ``expr`` matches.

    None when no match exists before year 9999. Raises ``ScheduleError`` for a bad expression.
    """
    start = after_wall.replace(microsecond=0, fold=0, tzinfo=UTC)
    best: datetime | None = None
    for trigger in _triggers(expr):
        try:
            found: datetime | None = trigger.get_next_fire_time(None, start + timedelta(seconds=1))
        except (OverflowError, ValueError):
            found = None
        if found is not None and (best is None or found < best):
            best = found
    return None if best is None else best.replace(tzinfo=None)


@lru_cache(maxsize=4096)
def _triggers(expr: str) -> tuple[Any, ...]:
    """One UTC CronTrigger, or two whose union is Vixie's day-of-month OR day-of-week."""
    fields = _MACROS.get(expr.strip().lower(), expr).split()
    if len(fields) != len(_FIELDS):
        raise ScheduleError(
            f"invalid cron expression {expr!r}: expected 5 fields (minute hour day month weekday), "
            f"got {len(fields)}"
        )
    day, weekday = fields[2], fields[4]
    days = _weekdays(expr, weekday)
    either = not day.startswith("*") and not weekday.startswith("*")
    pairs = [(day, "*"), ("*", days)] if either else [(day, days)]
    return tuple(_trigger(expr, fields, d, w) for d, w in pairs)


def _trigger(expr: str, fields: list[str], day: str, weekday: str) -> Any:
    """A UTC CronTrigger of ``fields`` with ``day`` and ``weekday`` in place of theirs; on a
    bad field the error names that field."""
    minute, hour, _day, month, _weekday = fields
    try:
        return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=weekday, timezone=UTC)
    except ValueError as exc:
        name, value = _bad_field(fields)
        reason = _APS_PREFIX.sub("", str(exc))
        raise ScheduleError(f"invalid cron expression {expr!r}: {name} field {value!r}: {reason}") from exc


def _bad_field(fields: list[str]) -> tuple[str, str]:
    """Which of minute, hour, day, month a failed CronTrigger rejected (weekday is checked before)."""
    for name, value in zip(_FIELDS[:4], fields, strict=False):
        try:
            CronTrigger(**{name: value}, timezone=UTC)
        except ValueError:
            return name, value
    return "weekday", fields[4]


def _weekdays(expr: str, field: str) -> str:
    """A crontab day-of-week field as APScheduler weekday names (its numbers start at Monday)."""
    if field == "*":
        return "*"
    days: set[int] = set()
    for part in field.lower().split(","):
        found = _weekday_range(part)
        if found is None:
            raise ScheduleError(
                f"invalid cron expression {expr!r}: weekday field {field!r}: expected 0-7 or sun-sat, "
                "a range such as 1-5 or mon-fri, a step such as */2, or a list of these"
            )
        days |= found
    return ",".join(_WEEKDAYS[day] for day in sorted(days))


def _weekday_range(part: str) -> set[int] | None:
    """Days (0 = Sunday) named by one list item such as ``5``, ``1-5``, ``*/2``, ``mon-fri/2``."""
    match = _WEEKDAY_PART.fullmatch(part)
    if match is None:
        return None
    first, last, step = match.group("first", "last", "step")
    if first == "*":
        if last is not None:
            return None
        low, high = 0, 6
    else:
        low = _weekday_number(first)
        high = _weekday_number(last) if last is not None else (7 if step else low)
    if low < 0 or high < low or (step is not None and int(step) < 1):
        return None
    return {day % 7 for day in range(low, high + 1, int(step or 1))}


def _weekday_number(token: str) -> int:
    """0-7 for a crontab day number or name; -1 for anything else."""
    if token.isdigit():
        number = int(token)
        return number if number <= 7 else -1
    return _WEEKDAYS.index(token) if token in _WEEKDAYS else -1
