"""The APScheduler quarantine: crontab parsing and matching, zones, and the periodic jobs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime

import pytest
from structlog.testing import capture_logs

from reminderd.core.cron import PeriodicJobs, cron_next_wall, load_zone, validate_cron
from reminderd.errors import ScheduleError

WEEKDAY_HELP = (
    "expected 0-7 or sun-sat, a range such as 1-5 or mon-fri, a step such as */2, or a list of these"
)


def walls(expr: str, start: str, count: int) -> list[str]:
    """The next ``count`` matches after ``start``, as ``Www YYYY-MM-DD HH:MM``."""
    found: list[str] = []
    wall: datetime | None = datetime.fromisoformat(start)
    for _ in range(count):
        assert wall is not None
        wall = cron_next_wall(expr, wall)
        assert wall is not None
        found.append(wall.strftime("%a %Y-%m-%d %H:%M"))
    return found


async def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Poll ``condition`` until it holds; fail the test at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached before the deadline")
        await asyncio.sleep(0.002)


# --- crontab expressions ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        (
            "61 * * * *",
            "invalid cron expression '61 * * * *': minute field '61': "
            "the last value (61) is higher than the maximum value (59)",
        ),
        (
            "0 24 * * *",
            "invalid cron expression '0 24 * * *': hour field '24': "
            "the last value (24) is higher than the maximum value (23)",
        ),
        (
            "0 0 0 * *",
            "invalid cron expression '0 0 0 * *': day field '0': "
            "the first value (0) is lower than the minimum value (1)",
        ),
        (
            "0 0 * 13 *",
            "invalid cron expression '0 0 * 13 *': month field '13': "
            "the last value (13) is higher than the maximum value (12)",
        ),
        (
            "x * * * *",
            "invalid cron expression 'x * * * *': minute field 'x': "
            'Unrecognized expression "x" for field "minute"',
        ),
        (
            "* * *",
            "invalid cron expression '* * *': expected 5 fields (minute hour day month weekday), got 3",
        ),
        (
            "0 0 1 1 * 2026",
            "invalid cron expression '0 0 1 1 * 2026': expected 5 fields (minute hour day month weekday), "
            "got 6",
        ),
        ("", "invalid cron expression '': expected 5 fields (minute hour day month weekday), got 0"),
        (
            "@fortnightly",
            "invalid cron expression '@fortnightly': "
            "expected 5 fields (minute hour day month weekday), got 1",
        ),
        ("0 0 * * 8", f"invalid cron expression '0 0 * * 8': weekday field '8': {WEEKDAY_HELP}"),
        ("0 0 * * 5-1", f"invalid cron expression '0 0 * * 5-1': weekday field '5-1': {WEEKDAY_HELP}"),
        (
            "0 0 * * funday",
            f"invalid cron expression '0 0 * * funday': weekday field 'funday': {WEEKDAY_HELP}",
        ),
        ("0 0 * * */0", f"invalid cron expression '0 0 * * */0': weekday field '*/0': {WEEKDAY_HELP}"),
        ("0 0 * * *-2", f"invalid cron expression '0 0 * * *-2': weekday field '*-2': {WEEKDAY_HELP}"),
        ("0 0 30 2 *", "invalid cron expression '0 0 30 2 *': it never matches a date"),
        ("0 0 31 4,6,9,11 *", "invalid cron expression '0 0 31 4,6,9,11 *': it never matches a date"),
    ],
)
def test_bad_cron_expression_is_refused_with_its_reason(expr: str, message: str) -> None:
    """A malformed or never-matching expression raises ScheduleError naming the bad field."""
    with pytest.raises(ScheduleError) as caught:
        validate_cron(expr, "UTC")
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("tz", "message"),
    [
        ("Mars/Base", "unknown time zone 'Mars/Base'"),
        ("", "unknown time zone ''"),
        ("utc", "unknown time zone 'utc'"),
        ("../etc/passwd", "unknown time zone '../etc/passwd'"),
        ("/etc/localtime", "unknown time zone '/etc/localtime'"),
        ("Europe", "unknown time zone 'Europe'"),
        ("CET+1", "unknown time zone 'CET+1'"),
    ],
)
def test_unknown_time_zone_is_refused(tz: str, message: str) -> None:
    """A zone name that tzdata does not know raises ScheduleError with the name quoted."""
    with pytest.raises(ScheduleError) as caught:
        validate_cron("0 9 * * *", tz)
    assert str(caught.value) == message
    with pytest.raises(ScheduleError, match=r"^unknown time zone"):
        load_zone(tz)


@pytest.mark.parametrize(
    "expr", ["0 9 * * 1-5", "*/5 * * * *", "0 0 29 2 *", "@daily", "@Hourly", "0 0 * * 7"]
)
def test_valid_cron_expression_is_accepted(expr: str) -> None:
    """Well-formed expressions, macros and rare-but-possible dates validate in a real zone."""
    validate_cron(expr, "Europe/Berlin")


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("0 9 * * 0", ["Sun 2026-03-01 09:00", "Sun 2026-03-08 09:00"]),
        ("0 9 * * 7", ["Sun 2026-03-01 09:00", "Sun 2026-03-08 09:00"]),
        ("0 9 * * sun", ["Sun 2026-03-01 09:00", "Sun 2026-03-08 09:00"]),
        ("0 9 * * 1", ["Mon 2026-03-02 09:00", "Mon 2026-03-09 09:00"]),
        ("0 9 * * 6", ["Sat 2026-03-07 09:00", "Sat 2026-03-14 09:00"]),
        ("0 9 * * 5-7", ["Sun 2026-03-01 09:00", "Fri 2026-03-06 09:00", "Sat 2026-03-07 09:00"]),
        ("0 9 * * sun-tue", ["Sun 2026-03-01 09:00", "Mon 2026-03-02 09:00", "Tue 2026-03-03 09:00"]),
        ("0 9 * * */2", ["Sun 2026-03-01 09:00", "Tue 2026-03-03 09:00", "Thu 2026-03-05 09:00"]),
        ("0 9 * * 1-5/2", ["Mon 2026-03-02 09:00", "Wed 2026-03-04 09:00", "Fri 2026-03-06 09:00"]),
        ("0 9 * * 0,3", ["Sun 2026-03-01 09:00", "Wed 2026-03-04 09:00", "Sun 2026-03-08 09:00"]),
        ("0 9 * * 5/1", ["Sun 2026-03-01 09:00", "Fri 2026-03-06 09:00", "Sat 2026-03-07 09:00"]),
    ],
)
def test_weekday_numbers_follow_crontab(expr: str, expected: list[str]) -> None:
    """Day-of-week 0 and 7 are Sunday and 1 is Monday, as in crontab (APScheduler 3 starts at Monday)."""
    assert walls(expr, "2026-02-28 12:00", len(expected)) == expected


def test_weekdays_mean_monday_to_friday() -> None:
    """``1-5`` and ``mon-fri`` both skip the weekend."""
    expected = [
        "Fri 2026-03-06 09:00",
        "Mon 2026-03-09 09:00",
        "Tue 2026-03-10 09:00",
        "Wed 2026-03-11 09:00",
        "Thu 2026-03-12 09:00",
        "Fri 2026-03-13 09:00",
        "Mon 2026-03-16 09:00",
    ]
    assert walls("0 9 * * 1-5", "2026-03-06 08:00", 7) == expected
    assert walls("0 9 * * MON-FRI", "2026-03-06 08:00", 7) == expected


def test_day_of_month_and_weekday_match_either() -> None:
    """When both day fields are restricted either one matching fires, as in Vixie cron."""
    assert walls("0 0 13 * 5", "2026-02-28 12:00", 4) == [
        "Fri 2026-03-06 00:00",
        "Fri 2026-03-13 00:00",
        "Fri 2026-03-20 00:00",
        "Fri 2026-03-27 00:00",
    ]
    assert walls("0 0 1 * 1", "2026-03-28 12:00", 3) == [
        "Mon 2026-03-30 00:00",
        "Wed 2026-04-01 00:00",
        "Mon 2026-04-06 00:00",
    ]


def test_star_day_field_keeps_the_other_restriction() -> None:
    """A ``*`` (or ``*/n``) day-of-month leaves the weekday as the only day restriction."""
    assert walls("0 0 */1 * 5", "2026-02-28 12:00", 2) == ["Fri 2026-03-06 00:00", "Fri 2026-03-13 00:00"]


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("@hourly", ["Sat 2026-02-28 13:00", "Sat 2026-02-28 14:00"]),
        ("@daily", ["Sun 2026-03-01 00:00", "Mon 2026-03-02 00:00"]),
        ("@midnight", ["Sun 2026-03-01 00:00", "Mon 2026-03-02 00:00"]),
        ("@weekly", ["Sun 2026-03-01 00:00", "Sun 2026-03-08 00:00"]),
        ("@monthly", ["Sun 2026-03-01 00:00", "Wed 2026-04-01 00:00"]),
        ("@yearly", ["Fri 2027-01-01 00:00", "Sat 2028-01-01 00:00"]),
        ("@annually", ["Fri 2027-01-01 00:00", "Sat 2028-01-01 00:00"]),
    ],
)
def test_macros_expand_like_crontab(expr: str, expected: list[str]) -> None:
    """The ``@hourly`` ... ``@yearly`` shorthands mean what they mean in crontab."""
    assert walls(expr, "2026-02-28 12:30", 2) == expected


def test_next_wall_is_strictly_after() -> None:
    """A start exactly on a match, or inside its minute, gives the following match."""
    start = datetime(2026, 5, 1, 9, 0)
    assert cron_next_wall("0 9 * * *", start) == datetime(2026, 5, 2, 9, 0)
    assert cron_next_wall("0 9 * * *", start.replace(microsecond=999_999)) == datetime(2026, 5, 2, 9, 0)
    assert cron_next_wall("0 9 * * *", start.replace(second=59)) == datetime(2026, 5, 2, 9, 0)
    assert cron_next_wall("* * * * *", start.replace(second=59)) == datetime(2026, 5, 1, 9, 1)
    assert cron_next_wall("0 9 * * *", datetime(2026, 5, 1, 8, 59, 59)) == start


def test_next_wall_ignores_fold() -> None:
    """A wall time marked as the second pass of a repeated hour is still just a wall time."""
    start = datetime(2026, 10, 25, 2, 10, fold=1)
    assert cron_next_wall("30 2 * * *", start) == datetime(2026, 10, 25, 2, 30)


def test_leap_day_cron_waits_for_a_leap_year() -> None:
    """``0 0 29 2 *`` next fires on the next February 29th."""
    assert cron_next_wall("0 0 29 2 *", datetime(2026, 3, 1)) == datetime(2028, 2, 29)


def test_no_match_after_the_end_of_time() -> None:
    """Past the last representable match the answer is None, not an exception."""
    assert cron_next_wall("0 0 1 1 *", datetime(9999, 6, 1)) is None
    assert cron_next_wall("* * * * *", datetime(9999, 12, 31, 23, 59, 30)) is None
    assert cron_next_wall("* * * * *", datetime.max) is None


# --- periodic jobs ---------------------------------------------------------------------


async def test_job_runs_repeatedly() -> None:
    """A job added with a short interval keeps being run by the started scheduler."""
    runs: list[float] = []

    async def tick() -> None:
        runs.append(time.monotonic())

    jobs = PeriodicJobs()
    jobs.add("tick", tick, 10)
    jobs.start()
    assert jobs.running
    await wait_until(lambda: len(runs) >= 5)
    await jobs.shutdown()
    assert not jobs.running


async def test_run_now_runs_at_once() -> None:
    """With ``run_now`` the first run does not wait a whole (here one-minute) interval."""
    runs: list[int] = []

    async def tick() -> None:
        runs.append(1)

    jobs = PeriodicJobs()
    jobs.add("sweep", tick, 60_000, run_now=True)
    jobs.start()
    await wait_until(lambda: len(runs) == 1)
    await jobs.shutdown()


async def test_slow_job_never_overlaps_itself() -> None:
    """A run slower than its interval delays the next run instead of running beside it."""
    release = asyncio.Event()
    state = {"active": 0, "max_active": 0, "starts": 0, "witness": 0}

    async def slow() -> None:
        state["starts"] += 1
        state["active"] += 1
        state["max_active"] = max(state["max_active"], state["active"])
        try:
            if state["starts"] == 1:
                await release.wait()
        finally:
            state["active"] -= 1

    async def witness() -> None:
        state["witness"] += 1

    jobs = PeriodicJobs()
    jobs.add("slow", slow, 5)
    jobs.add("witness", witness, 5)
    jobs.start()
    await wait_until(lambda: state["starts"] == 1)
    seen = state["witness"]
    await wait_until(lambda: state["witness"] >= seen + 10)  # ten intervals pass while slow is busy
    assert state["starts"] == 1
    release.set()
    await wait_until(lambda: state["starts"] >= 3)
    await jobs.shutdown()
    assert state["max_active"] == 1


async def test_no_runs_after_shutdown() -> None:
    """Once shut down, a job is not run again, while an independent scheduler keeps ticking."""
    runs = {"stopped": 0, "witness": 0}

    async def stopped() -> None:
        runs["stopped"] += 1

    async def witness() -> None:
        runs["witness"] += 1

    jobs = PeriodicJobs()
    jobs.add("stopped", stopped, 5)
    jobs.start()
    await wait_until(lambda: runs["stopped"] >= 2)
    await jobs.shutdown()
    after_shutdown = runs["stopped"]
    clock = PeriodicJobs()
    clock.add("witness", witness, 5)
    clock.start()
    await wait_until(lambda: runs["witness"] >= 10)
    await clock.shutdown()
    assert runs["stopped"] == after_shutdown


async def test_shutdown_lets_a_run_in_flight_finish() -> None:
    """Shutdown waits for a running job (within ``drain_ms``) rather than cancelling it."""
    started, release = asyncio.Event(), asyncio.Event()
    outcome: list[str] = []

    async def work() -> None:
        started.set()
        try:
            await release.wait()
            outcome.append("finished")
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise

    jobs = PeriodicJobs()
    jobs.add("work", work, 60_000, run_now=True)
    jobs.start()
    await asyncio.wait_for(started.wait(), timeout=5)
    stopping = asyncio.create_task(jobs.shutdown(drain_ms=10_000))
    done, _ = await asyncio.wait({stopping}, timeout=0.05)
    assert not done  # shutdown is waiting for the run, not cancelling it
    release.set()
    await asyncio.wait_for(stopping, timeout=5)
    assert outcome == ["finished"]
    assert not jobs.running


async def test_shutdown_cancels_a_run_that_outlasts_the_drain() -> None:
    """A run still going after ``drain_ms`` is cancelled, ends quietly and shutdown returns."""
    started = asyncio.Event()
    outcome: list[str] = []

    async def stuck() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise

    jobs = PeriodicJobs()
    jobs.add("stuck", stuck, 60_000, run_now=True)
    jobs.start()
    await asyncio.wait_for(started.wait(), timeout=5)
    with capture_logs() as logs:
        await asyncio.wait_for(jobs.shutdown(drain_ms=20), timeout=5)
    assert outcome == ["cancelled"]
    assert {"event": "periodic.cancelled", "job": "stuck", "log_level": "info"} in logs
    assert not jobs.running


async def test_failing_job_is_logged_and_keeps_its_schedule() -> None:
    """A job that raises is logged as ``periodic.failed`` and still runs at its next interval."""
    runs: list[int] = []

    async def broken() -> None:
        runs.append(1)
        raise RuntimeError("boom")

    jobs = PeriodicJobs()
    jobs.add("broken", broken, 5)
    with capture_logs() as logs:
        jobs.start()
        await wait_until(lambda: len(runs) >= 3)
        await jobs.shutdown()
    failures = [entry for entry in logs if entry["event"] == "periodic.failed"]
    assert len(failures) >= 3
    assert failures[0]["job"] == "broken"
    assert failures[0]["log_level"] == "error"


async def test_reschedule_changes_the_interval() -> None:
    """A job rescheduled from one minute to a few milliseconds starts running often."""
    runs: list[int] = []

    async def tick() -> None:
        runs.append(1)

    jobs = PeriodicJobs()
    jobs.add("scan", tick, 60_000)
    jobs.start()
    jobs.reschedule("scan", 5)
    await wait_until(lambda: len(runs) >= 3)
    await jobs.shutdown()


async def test_add_with_the_same_name_replaces_the_job() -> None:
    """Adding a job under an existing name replaces it instead of running both."""
    runs = {"old": 0, "new": 0}

    async def old() -> None:
        runs["old"] += 1

    async def new() -> None:
        runs["new"] += 1

    jobs = PeriodicJobs()
    jobs.add("sweep", old, 60_000)
    jobs.add("sweep", new, 5)
    jobs.start()
    await wait_until(lambda: runs["new"] >= 3)
    await jobs.shutdown()
    assert runs["old"] == 0


def test_reschedule_of_unknown_job_is_refused() -> None:
    """Rescheduling a name that was never added raises KeyError naming it."""
    jobs = PeriodicJobs()
    with pytest.raises(KeyError, match="no periodic job named 'nope'"):
        jobs.reschedule("nope", 1000)


@pytest.mark.parametrize("interval_ms", [0, -5])
def test_interval_below_one_millisecond_is_refused(interval_ms: int) -> None:
    """A job interval under 1 ms raises ValueError with the value."""

    async def tick() -> None:
        return None

    jobs = PeriodicJobs()
    with pytest.raises(ValueError, match=f"^interval must be at least 1ms, got {interval_ms}$"):
        jobs.add("tick", tick, interval_ms)
    with pytest.raises(ValueError, match=f"^interval must be at least 1ms, got {interval_ms}$"):
        jobs.reschedule("tick", interval_ms)


async def test_shutdown_before_start_or_twice_is_a_no_op() -> None:
    """Shutting down a scheduler that never started, or one already stopped, returns quietly."""
    jobs = PeriodicJobs()
    await jobs.shutdown()
    assert not jobs.running
    jobs.start()
    await jobs.shutdown()
    await jobs.shutdown()
    assert not jobs.running
