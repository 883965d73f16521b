"""The one module that imports APScheduler 3 (untyped); the rest of reminderd sees typed functions.

APScheduler serves two purposes here. ``CronTrigger`` enumerates the wall-clock times that
match a crontab expression, and ``AsyncIOScheduler`` runs the daemon's periodic jobs.

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

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from reminderd.errors import ScheduleError

log = structlog.get_logger(__name__)

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


def load_zone(tz: str) -> ZoneInfo:
    """The IANA zone named ``tz``; ``ScheduleError`` for a name tzdata does not know."""
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ScheduleError(f"unknown time zone {tz!r}") from exc


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
    minute, hour, day, month, weekday = fields
    days = _weekdays(expr, weekday)
    either = not day.startswith("*") and not weekday.startswith("*")
    pairs = [(day, "*"), ("*", days)] if either else [(day, days)]
    return tuple(_trigger(expr, fields, minute, hour, d, month, w) for d, w in pairs)


def _trigger(expr: str, fields: list[str], minute: str, hour: str, day: str, month: str, weekday: str) -> Any:
    """A UTC CronTrigger; on a bad field the error names that field."""
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


def _interval(interval_ms: int) -> Any:
    """An IntervalTrigger; it adds the interval to the previous *scheduled* run, so it never drifts."""
    if interval_ms < 1:
        raise ValueError(f"interval must be at least 1ms, got {interval_ms}")
    return IntervalTrigger(seconds=interval_ms / 1000, timezone=UTC)


class PeriodicJobs:
    """The daemon's periodic jobs (sweep, adoption scan, heartbeat) on one ``AsyncIOScheduler``.

    A job runs at most once at a time: a run slower than its interval delays the next one
    instead of overlapping it, late runs coalesce into one, and a late run is never dropped.
    APScheduler 3 cancels running jobs when it shuts down, so ``shutdown`` first lets runs in
    flight finish (up to ``drain_ms``) and cancels only what remains; jobs must still be
    cancel-safe, which the daemon's are (every state change is one atomic Redis script).
    """

    def __init__(self) -> None:
        self._scheduler: Any = AsyncIOScheduler(timezone=UTC)
        self._in_flight: dict[str, asyncio.Task[Any]] = {}

    @property
    def running(self) -> bool:
        """Whether the scheduler has been started and not yet shut down."""
        return bool(self._scheduler.running)

    def add(
        self, name: str, func: Callable[[], Awaitable[None]], interval_ms: int, *, run_now: bool = False
    ) -> None:
        """Run ``func`` every ``interval_ms``; first at once with ``run_now``, else after one interval."""
        first = {"next_run_time": datetime.now(UTC)} if run_now else {}
        self._scheduler.add_job(
            self._guarded(name, func),
            _interval(interval_ms),
            id=name,
            name=name,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
            replace_existing=True,
            **first,
        )

    def reschedule(self, name: str, interval_ms: int) -> None:
        """Give job ``name`` a new interval (config reload); its next run is one new interval away."""
        trigger = _interval(interval_ms)
        if self._scheduler.get_job(name) is None:
            raise KeyError(f"no periodic job named {name!r}")
        self._scheduler.reschedule_job(name, trigger=trigger)

    def start(self) -> None:
        """Start running the jobs on the current event loop (call from inside it).

        APScheduler logs two INFO lines through stdlib logging for every run; at a one-second
        sweep that would drown the daemon's own events, so only its warnings are kept.
        """
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
        self._scheduler.start()

    async def shutdown(self, drain_ms: int = 5000) -> None:
        """Stop starting runs, let runs in flight finish for ``drain_ms``, then cancel the rest."""
        if not self._scheduler.running:
            return
        self._scheduler.pause()
        await _wait(self._in_flight.values(), drain_ms)
        for task in self._in_flight.values():
            task.cancel()
        await _wait(self._in_flight.values(), drain_ms)
        self._scheduler.shutdown(wait=False)
        await asyncio.sleep(0)  # AsyncIOScheduler runs its shutdown as the next loop callback
        if self._in_flight:
            log.warning("periodic.unfinished", jobs=sorted(self._in_flight))

    def _guarded(self, name: str, func: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        """Wrap ``func`` so a failure is a structlog event and the run can be awaited at shutdown.

        A cancelled run ends quietly: this wrapper is the outermost frame of the task, so the
        cancellation has done its job, and letting it escape would only make APScheduler log a
        traceback for a deliberate stop.
        """

        async def run() -> None:
            task = asyncio.current_task()
            if task is not None:
                self._in_flight[name] = task
            try:
                await func()
            except asyncio.CancelledError:
                log.info("periodic.cancelled", job=name)
            except Exception:
                log.exception("periodic.failed", job=name)
            finally:
                self._in_flight.pop(name, None)

        return run


async def _wait(tasks: Any, timeout_ms: int) -> None:
    """Wait up to ``timeout_ms`` for ``tasks`` (a snapshot is taken) to finish."""
    pending = [task for task in tasks if not task.done()]
    if pending:
        await asyncio.wait(pending, timeout=timeout_ms / 1000)
