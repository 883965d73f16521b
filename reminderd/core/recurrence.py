"""Due-time math: when a schedule fires first, next, and after downtime, in epoch milliseconds.

Pure functions over ``reminderd.core.schedules`` shapes: no Redis and no clock of their own
(callers pass Redis's time). A next due time always comes from the schedule and the
previous *nominal* due time, never from when an occurrence actually fired, so a recurring
reminder cannot drift.

Cron follows Vixie cron's DST rules in the schedule's IANA zone:

- each wall-clock match fires once. On a fall-back day ``30 2 * * *`` fires at the first
  02:30 only, and an hourly cron does not fire the repeated hour's matches a second time
  (``every`` is the schedule for a fixed elapsed cadence);
- a match that falls in a spring-forward gap fires at the first instant after the gap
  (03:00 when 02:30 does not exist), and all matches in one gap share that one firing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import assert_never

from reminderd.core.cron import cron_next_wall, validate_cron
from reminderd.core.durations import parse_duration_ms
from reminderd.core.schedules import Cron, Every, Misfire, Once, Schedule
from reminderd.core.zones import load_zone, to_ms, wall_to_ms
from reminderd.errors import ScheduleError

CRON_COUNT_CAP = 10_000  # most missed cron occurrences counted one by one (see ``after_misfire``)
_WALK_CAP = 1_000  # wall-clock matches skipped at most inside one repeated (fall-back) period
_EPOCH_SECONDS = re.compile(r"\d+(?:\.\d{1,3})?")
_AT_FORMATS = (
    "expected ISO-8601 such as 2026-11-24T09:00:00+01:00 or 2026-11-24T08:00:00Z, a local time "
    "such as 2026-11-24 09:00 (read in {tz}), @<epoch-seconds> such as @1795510800, "
    "+<duration> such as +5m, or now"
)


@dataclass(frozen=True, slots=True)
class MisfireDecision:
    """What to do with an occurrence taken late, and when the reminder is due next.

    ``missed`` counts the occurrences that will never fire because of this decision.
    """

    fire: bool
    next_due_ms: int | None
    missed: int


def validate_schedule(schedule: Schedule) -> None:
    """Raise ``ScheduleError`` for a schedule that cannot be stored or can never fire."""
    match schedule:
        case Once(at_ms):
            if at_ms < 0:
                raise ScheduleError("time must not be before 1970-01-01T00:00:00Z")
        case Every(interval_ms, _):
            if interval_ms < 1:
                raise ScheduleError("every must be at least 1ms")
        case Cron(expr, tz):
            validate_cron(expr, tz)
        case _:
            assert_never(schedule)


def first_due_ms(schedule: Schedule, now_ms: int) -> int:
    """The first due time of a new reminder: Once its time, Every the first step at or after
    now, Cron the first match strictly after now."""
    match schedule:
        case Once(at_ms):
            return at_ms
        case Every():
            return _every_after(schedule, now_ms - 1)
        case Cron(expr, _):
            due_ms = _cron_after(schedule, now_ms)
            if due_ms is None:
                raise ScheduleError(f"cron expression {expr!r} has no time left to fire")
            return due_ms
        case _:
            assert_never(schedule)


def next_due_ms(schedule: Schedule, after_due_ms: int) -> int | None:
    """The occurrence after the one nominally due at ``after_due_ms``; None for a one-shot."""
    match schedule:
        case Once():
            return None
        case Every():
            return _every_after(schedule, after_due_ms)
        case Cron():
            return _cron_after(schedule, after_due_ms)
        case _:
            assert_never(schedule)


def describe_next(schedule: Schedule, after_ms: int, count: int) -> list[int]:
    """Up to ``count`` due times strictly after ``after_ms``, for ``reminderd show``."""
    if isinstance(schedule, Once):
        return [schedule.at_ms] if schedule.at_ms > after_ms and count > 0 else []
    found: list[int] = []
    due_ms = next_due_ms(schedule, after_ms)
    while due_ms is not None and len(found) < count:
        found.append(due_ms)
        due_ms = next_due_ms(schedule, due_ms)
    return found


def after_misfire(
    schedule: Schedule, nominal_due_ms: int, now_ms: int, policy: Misfire, grace_ms: int
) -> MisfireDecision:
    """Decide whether an occurrence taken at ``now_ms`` fires, and the reminder's next due time.

    An occurrence is missed when it is taken more than ``grace_ms`` after its nominal due
    time. A one-shot always fires: dropping it would lose the reminder. A missed recurring
    one follows ``policy``: ``fire_all`` fires it and continues with the next nominal
    occurrence (in the past, so each missed one fires in turn); ``fire_once`` fires it as
    the one catch-up and continues strictly after now; ``skip`` does not fire it and
    continues with the first occurrence that is not missed yet (due at or after
    ``now_ms - grace_ms``).

    Missed occurrences of ``every`` are counted arithmetically; those of a cron are counted
    one by one up to ``CRON_COUNT_CAP``, so after a very long outage ``missed`` is a lower bound.
    """
    if isinstance(schedule, Once):
        return MisfireDecision(fire=True, next_due_ms=None, missed=0)
    if now_ms - nominal_due_ms <= grace_ms:
        return MisfireDecision(fire=True, next_due_ms=next_due_ms(schedule, nominal_due_ms), missed=0)
    match policy:
        case Misfire.FIRE_ALL:
            return MisfireDecision(fire=True, next_due_ms=next_due_ms(schedule, nominal_due_ms), missed=0)
        case Misfire.FIRE_ONCE:
            skipped = _count_between(schedule, nominal_due_ms, now_ms)
            return MisfireDecision(fire=True, next_due_ms=next_due_ms(schedule, now_ms), missed=skipped)
        case Misfire.SKIP:
            last_missed_ms = now_ms - grace_ms - 1
            skipped = 1 + _count_between(schedule, nominal_due_ms, last_missed_ms)
            return MisfireDecision(
                fire=False, next_due_ms=next_due_ms(schedule, last_missed_ms), missed=skipped
            )
        case _:
            assert_never(policy)


def parse_at(text: str, now_ms: int, tz: str = "UTC") -> int:
    """Epoch milliseconds for a time typed by a user (CLI ``--at``, API strings).

    A time without an offset is read in ``tz``; an ambiguous one (fall-back) means its
    first occurrence, and one inside a spring-forward gap the first instant after the gap.
    """
    zone = load_zone(tz)
    raw = text.strip()
    if raw.lower() == "now":
        return now_ms
    if raw.startswith("@") and _EPOCH_SECONDS.fullmatch(raw[1:]):
        return round(float(raw[1:]) * 1000)
    try:
        if raw.startswith("+"):
            return now_ms + parse_duration_ms(raw[1:])
        parsed = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise ScheduleError(f"invalid time {text!r}: {_AT_FORMATS.format(tz=tz)}") from exc
    if parsed.tzinfo is None:
        return wall_to_ms(parsed, zone)
    return to_ms(parsed)


def _every_after(every: Every, after_ms: int) -> int:
    """The first ``anchor + k * interval`` (k >= 0) strictly after ``after_ms``."""
    if after_ms < every.anchor_ms:
        return every.anchor_ms
    steps = (after_ms - every.anchor_ms) // every.interval_ms + 1
    return every.anchor_ms + steps * every.interval_ms


def _count_between(schedule: Every | Cron, after_ms: int, until_ms: int) -> int:
    """How many occurrences fall in ``(after_ms, until_ms]``; capped for cron."""
    if isinstance(schedule, Every):
        return _every_count_upto(schedule, until_ms) - _every_count_upto(schedule, after_ms)
    count = 0
    due_ms = _cron_after(schedule, after_ms)
    while due_ms is not None and due_ms <= until_ms and count < CRON_COUNT_CAP:
        count += 1
        due_ms = _cron_after(schedule, due_ms)
    return count


def _every_count_upto(every: Every, until_ms: int) -> int:
    """How many occurrences fall at or before ``until_ms``."""
    if until_ms < every.anchor_ms:
        return 0
    return (until_ms - every.anchor_ms) // every.interval_ms + 1


def _cron_after(cron: Cron, after_ms: int) -> int | None:
    """The first instant strictly after ``after_ms`` at which ``cron`` fires (see module doc).

    Wall-clock matches are walked in order; a match whose instant is not after ``after_ms``
    is one of a repeated hour already passed (its first instant is the one that fires), so
    it is skipped rather than fired a second time.
    """
    zone = load_zone(cron.tz)
    try:
        wall = datetime.fromtimestamp(after_ms // 1000, zone).replace(tzinfo=None, fold=0)
    except (OverflowError, ValueError, OSError):  # beyond what datetime can represent
        return None
    for _ in range(_WALK_CAP):
        found = cron_next_wall(cron.expr, wall)
        if found is None:
            return None
        wall = found
        try:
            due_ms = wall_to_ms(wall, zone)
        except OverflowError:  # a last wall time of year 9999 that is in year 10000 in UTC
            return None
        if due_ms > after_ms:
            return due_ms
    return None
