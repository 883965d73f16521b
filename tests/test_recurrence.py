"""Due-time math: first and next due times, DST, misfire decisions and user-typed times."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reminderd.core.recurrence import (
    CRON_COUNT_CAP,
    MisfireDecision,
    after_misfire,
    describe_next,
    first_due_ms,
    next_due_ms,
    parse_at,
    validate_schedule,
)
from reminderd.core.schedules import Cron, Every, Once
from reminderd.errors import ScheduleError
from reminderd.models import Misfire

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
ZONES = ["Europe/Berlin", "America/New_York", "Australia/Sydney", "Australia/Lord_Howe", "UTC"]
AT_FORMATS = (
    "expected ISO-8601 such as 2026-11-24T09:00:00+01:00 or 2026-11-24T08:00:00Z, a local time "
    "such as 2026-11-24 09:00 (read in {tz}), @<epoch-seconds> such as @1795510800, "
    "+<duration> such as +5m, or now"
)


def ms(text: str, tz: str = "UTC") -> int:
    """Epoch ms of an ISO time; one without an offset is read in ``tz`` (fold 0)."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(tz))
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def local(epoch_ms: int, tz: str) -> str:
    """An instant as local ISO time with its offset, e.g. ``2026-03-29T03:00:00+02:00``."""
    return datetime.fromtimestamp(epoch_ms / 1000, ZoneInfo(tz)).isoformat()


def upcoming(schedule: Cron, start: str, count: int) -> list[str]:
    """The next ``count`` due times after local ``start``, as local ISO times."""
    return [local(due, schedule.tz) for due in describe_next(schedule, ms(start, schedule.tz), count)]


# --- validate_schedule -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        (Every(0, 0), "every must be at least 1ms"),
        (Every(-1000, 0), "every must be at least 1ms"),
        (Once(-1), "time must not be before 1970-01-01T00:00:00Z"),
        (
            Cron("61 * * * *"),
            "invalid cron expression '61 * * * *': minute field '61': "
            "the last value (61) is higher than the maximum value (59)",
        ),
        (Cron("0 0 30 2 *"), "invalid cron expression '0 0 30 2 *': it never matches a date"),
        (Cron("0 9 * * *", "Mars/Base"), "unknown time zone 'Mars/Base'"),
    ],
)
def test_invalid_schedule_is_refused(schedule: Once | Every | Cron, message: str) -> None:
    """A schedule that cannot fire, or does not parse, raises ScheduleError with its reason."""
    with pytest.raises(ScheduleError) as caught:
        validate_schedule(schedule)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    "schedule", [Once(0), Once(ms("2026-11-24T08:00:00Z")), Every(1, 0), Cron("0 9 * * 1-5", "Europe/Berlin")]
)
def test_valid_schedule_is_accepted(schedule: Once | Every | Cron) -> None:
    """Sound schedules, including a 1 ms interval and the epoch itself, pass validation."""
    validate_schedule(schedule)


# --- first and next due times ----------------------------------------------------------


def test_once_is_due_at_its_time_and_has_no_next() -> None:
    """A one-shot is due at its time, even one in the past, and has no next occurrence."""
    at_ms = ms("2026-11-24T08:00:00Z")
    assert first_due_ms(Once(at_ms), at_ms + DAY_MS) == at_ms
    assert first_due_ms(Once(at_ms), at_ms - DAY_MS) == at_ms
    assert next_due_ms(Once(at_ms), at_ms) is None


@pytest.mark.parametrize(
    ("now_ms", "expected_ms"),
    [(0, 1000), (1000, 1000), (1001, 1500), (1499, 1500), (1500, 1500), (1501, 2000), (10_250, 10_500)],
)
def test_every_first_due_is_the_first_step_at_or_after_now(now_ms: int, expected_ms: int) -> None:
    """An interval schedule starts at its anchor, or at the first later step not before now."""
    assert first_due_ms(Every(500, 1000), now_ms) == expected_ms


@pytest.mark.parametrize(
    ("after_ms", "expected_ms"),
    [(0, 1000), (999, 1000), (1000, 1500), (1001, 1500), (1499, 1500), (1500, 2000), (98_765, 99_000)],
)
def test_every_next_due_comes_from_the_grid(after_ms: int, expected_ms: int) -> None:
    """The next interval occurrence lies on anchor + k * interval, whatever time is passed in."""
    assert next_due_ms(Every(500, 1000), after_ms) == expected_ms


def test_cron_first_due_is_strictly_after_now() -> None:
    """A cron created exactly on a match is first due at the following match."""
    cron = Cron("0 9 * * *", "Europe/Berlin")
    assert first_due_ms(cron, ms("2026-05-01T09:00", cron.tz)) == ms("2026-05-02T09:00", cron.tz)
    assert first_due_ms(cron, ms("2026-05-01T08:59:59.999", cron.tz)) == ms("2026-05-01T09:00", cron.tz)
    assert first_due_ms(cron, ms("2026-05-01T09:00:00.001", cron.tz)) == ms("2026-05-02T09:00", cron.tz)


def test_cron_next_due_is_in_its_zone() -> None:
    """``0 9 * * *`` in New York fires at 09:00 New York time, 13:00 or 14:00 UTC with DST."""
    cron = Cron("0 9 * * *", "America/New_York")
    assert next_due_ms(cron, ms("2026-07-01T00:00:00Z")) == ms("2026-07-01T13:00:00Z")
    assert next_due_ms(cron, ms("2026-12-01T00:00:00Z")) == ms("2026-12-01T14:00:00Z")


def test_cron_without_time_left_has_no_due_time() -> None:
    """Past year 9999 a cron has no next occurrence, and creating one then is refused."""
    cron = Cron("0 0 1 1 *")
    late_ms = ms("9999-06-01T00:00:00Z")
    assert next_due_ms(cron, late_ms) is None
    assert next_due_ms(cron, 10**18) is None
    last_utc_ms = ms("9999-12-31T23:59:59.999Z")
    assert next_due_ms(Cron("* * * * *", "America/New_York"), last_utc_ms - 1000) is None
    assert describe_next(cron, late_ms, 3) == []
    with pytest.raises(ScheduleError) as caught:
        first_due_ms(cron, late_ms)
    assert str(caught.value) == "cron expression '0 0 1 1 *' has no time left to fire"


# --- DST -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tz", "expr", "start", "expected"),
    [
        # Fall back: the repeated 02:30 fires once, at its first (summer-time) instant.
        (
            "Europe/Berlin",
            "30 2 * * *",
            "2026-10-24T12:00",
            ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"],
        ),
        (
            "America/New_York",
            "30 1 * * *",
            "2026-10-31T12:00",
            ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"],
        ),
        (
            "Australia/Sydney",
            "30 2 * * *",
            "2026-04-04T12:00",
            ["2026-04-05T02:30:00+11:00", "2026-04-06T02:30:00+10:00"],
        ),
        # Spring forward: 02:30 does not exist, so it fires at the first instant after the gap.
        (
            "Europe/Berlin",
            "30 2 * * *",
            "2026-03-28T12:00",
            ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"],
        ),
        (
            "America/New_York",
            "30 2 * * *",
            "2026-03-07T12:00",
            ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"],
        ),
        (
            "Australia/Sydney",
            "30 2 * * *",
            "2026-10-03T12:00",
            ["2026-10-04T03:00:00+11:00", "2026-10-05T02:30:00+11:00"],
        ),
        # Lord Howe moves by thirty minutes.
        (
            "Australia/Lord_Howe",
            "0 2 * * *",
            "2026-10-03T12:00",
            ["2026-10-04T02:30:00+11:00", "2026-10-05T02:00:00+11:00"],
        ),
        (
            "Australia/Lord_Howe",
            "45 1 * * *",
            "2026-04-04T12:00",
            ["2026-04-05T01:45:00+11:00", "2026-04-06T01:45:00+10:30"],
        ),
    ],
)
def test_daily_cron_on_transition_days(tz: str, expr: str, start: str, expected: list[str]) -> None:
    """A daily cron fires once on fall-back (first instant) and spring-forward (after the gap) days."""
    assert upcoming(Cron(expr, tz), start, len(expected)) == expected


@pytest.mark.parametrize("tz", ZONES)
@pytest.mark.parametrize(
    "expr", ["30 2 * * *", "0 2 * * *", "30 1 * * *", "59 2 * * *", "0 3 * * *", "0 0 * * *"]
)
def test_daily_cron_fires_exactly_once_every_local_day_of_the_year(tz: str, expr: str) -> None:
    """Across a whole year with both transitions, each local date gets exactly one firing."""
    cron = Cron(expr, tz)
    dues = describe_next(cron, ms("2025-12-31T12:00", tz), 365)
    days = [datetime.fromtimestamp(due / 1000, ZoneInfo(tz)).date() for due in dues]
    assert days == [date(2026, 1, 1) + timedelta(days=offset) for offset in range(365)]
    assert all(later - earlier >= 22 * HOUR_MS for earlier, later in pairwise(dues))


@pytest.mark.parametrize(
    ("tz", "expr", "start", "expected"),
    [
        # Fall back: the repeated hour's matches fired in its first pass and are not fired again.
        (
            "Europe/Berlin",
            "0 * * * *",
            "2026-10-25T00:30",
            [
                "2026-10-25T01:00:00+02:00",
                "2026-10-25T02:00:00+02:00",
                "2026-10-25T03:00:00+01:00",
                "2026-10-25T04:00:00+01:00",
            ],
        ),
        (
            "America/New_York",
            "30 * * * *",
            "2026-11-01T00:00",
            [
                "2026-11-01T00:30:00-04:00",
                "2026-11-01T01:30:00-04:00",
                "2026-11-01T02:30:00-05:00",
                "2026-11-01T03:30:00-05:00",
            ],
        ),
        # Spring forward: the missing hour's match fires once, at the end of the gap.
        (
            "Europe/Berlin",
            "0 * * * *",
            "2026-03-29T00:30",
            ["2026-03-29T01:00:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-29T04:00:00+02:00"],
        ),
        (
            "America/New_York",
            "*/20 * * * *",
            "2026-03-08T01:10",
            [
                "2026-03-08T01:20:00-05:00",
                "2026-03-08T01:40:00-05:00",
                "2026-03-08T03:00:00-04:00",
                "2026-03-08T03:20:00-04:00",
            ],
        ),
        (
            "Australia/Sydney",
            "15 * * * *",
            "2026-10-04T01:00",
            ["2026-10-04T01:15:00+10:00", "2026-10-04T03:00:00+11:00", "2026-10-04T03:15:00+11:00"],
        ),
        (
            "Australia/Sydney",
            "15 * * * *",
            "2026-04-05T01:00",
            [
                "2026-04-05T01:15:00+11:00",
                "2026-04-05T02:15:00+11:00",
                "2026-04-05T03:15:00+10:00",
                "2026-04-05T04:15:00+10:00",
            ],
        ),
    ],
)
def test_hourly_cron_across_transitions(tz: str, expr: str, start: str, expected: list[str]) -> None:
    """Hourly and sub-hourly crons fire each wall-clock match once around both transitions."""
    assert upcoming(Cron(expr, tz), start, len(expected)) == expected


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("30 1 * * *", "2026-11-02T01:30:00-05:00"),
        ("0 * * * *", "2026-11-01T02:00:00-05:00"),
        ("*/15 * * * *", "2026-11-01T02:00:00-05:00"),
        ("* * * * *", "2026-11-01T02:00:00-05:00"),
    ],
)
def test_next_due_from_inside_the_repeated_hour(expr: str, expected: str) -> None:
    """From the second pass of a repeated hour the next due skips matches already fired in the first."""
    second_pass_ms = ms("2026-11-01T01:10:00-05:00")
    assert (
        local(next_due_ms(Cron(expr, "America/New_York"), second_pass_ms) or 0, "America/New_York")
        == expected
    )


def test_successive_next_due_never_goes_back_or_repeats_through_a_dst_year() -> None:
    """Chaining next_due through a year of quarter-hours in three zones is strictly increasing."""
    for tz in ["Europe/Berlin", "America/New_York", "Australia/Sydney"]:
        dues = describe_next(Cron("*/15 0-4 * * *", tz), ms("2026-01-01T00:00", tz), 365 * 20)
        assert all(later > earlier for earlier, later in pairwise(dues))
        walls = [datetime.fromtimestamp(due / 1000, ZoneInfo(tz)).replace(tzinfo=None) for due in dues]
        assert len(set(walls)) == len(walls)


# --- properties ------------------------------------------------------------------------

intervals = st.integers(min_value=1, max_value=10 * DAY_MS)
anchors = st.integers(min_value=0, max_value=4_000_000_000_000)


@given(interval_ms=intervals, anchor_ms=anchors, steps=st.integers(min_value=0, max_value=10_000))
def test_every_never_drifts(interval_ms: int, anchor_ms: int, steps: int) -> None:
    """From occurrence k the next is exactly anchor + (k + 1) * interval."""
    every = Every(interval_ms, anchor_ms)
    assert next_due_ms(every, anchor_ms + steps * interval_ms) == anchor_ms + (steps + 1) * interval_ms


@given(
    interval_ms=intervals, anchor_ms=anchors, after_ms=st.integers(min_value=0, max_value=5_000_000_000_000)
)
def test_every_next_due_is_the_following_grid_point(interval_ms: int, anchor_ms: int, after_ms: int) -> None:
    """Next due is on the grid, strictly after the given time, and less than one interval beyond it."""
    due = next_due_ms(Every(interval_ms, anchor_ms), after_ms)
    assert due is not None
    assert due > after_ms
    assert (due - anchor_ms) % interval_ms == 0
    assert due == anchor_ms or due - after_ms <= interval_ms


@settings(max_examples=50)
@given(interval_ms=intervals, anchor_ms=anchors, count=st.integers(min_value=0, max_value=50))
def test_every_chain_is_the_grid(interval_ms: int, anchor_ms: int, count: int) -> None:
    """describe_next from before the anchor lists anchor + k * interval for k = 0, 1, 2, ..."""
    expected = [anchor_ms + k * interval_ms for k in range(count)]
    assert describe_next(Every(interval_ms, anchor_ms), anchor_ms - 1, count) == expected


cron_exprs = st.sampled_from(
    [
        "* * * * *",
        "*/7 * * * *",
        "30 2 * * *",
        "0 * * * *",
        "15 1-3 * * 0",
        "0 9 * * 1-5",
        "0 0 29 2 *",
        "45 2 13 * 5",
    ]
)


@settings(max_examples=60, deadline=None)
@given(
    expr=cron_exprs, tz=st.sampled_from(ZONES), start_ms=st.integers(min_value=0, max_value=4_100_000_000_000)
)
def test_cron_next_due_strictly_increases_and_is_stable(expr: str, tz: str, start_ms: int) -> None:
    """Each next due is later than the last, and asking from just before a due time returns it."""
    cron = Cron(expr, tz)
    previous = start_ms
    for _ in range(20):
        due = next_due_ms(cron, previous)
        assert due is not None
        assert due > previous
        assert next_due_ms(cron, due - 1) == due
        previous = due


@settings(max_examples=60, deadline=None)
@given(
    tz=st.sampled_from(ZONES),
    hour=st.integers(min_value=0, max_value=23),
    minute=st.integers(min_value=0, max_value=59),
    day=st.dates(min_value=date(2000, 1, 1), max_value=date(2037, 12, 31)),
)
def test_daily_cron_fires_at_its_wall_time_or_the_end_of_a_gap(
    tz: str, hour: int, minute: int, day: date
) -> None:
    """A daily cron fires at its local time, or (when a gap swallows it) within that gap's length after it."""
    zone = ZoneInfo(tz)
    start = datetime(day.year, day.month, day.day, tzinfo=zone)
    due = next_due_ms(Cron(f"{minute} {hour} * * *", tz), ms(start.isoformat()) - 1)
    assert due is not None
    fired = datetime.fromtimestamp(due / 1000, zone)
    wanted = datetime(day.year, day.month, day.day, hour, minute)
    assert fired.date() == day
    assert fired.fold == 0
    if fired.replace(tzinfo=None) != wanted:
        assert timedelta(0) < fired.replace(tzinfo=None) - wanted <= timedelta(hours=2)
        assert wanted.replace(tzinfo=zone).astimezone(UTC).astimezone(zone).replace(tzinfo=None) != wanted


# --- misfire ---------------------------------------------------------------------------

EVERY_MINUTE = Every(MINUTE_MS, 0)


@pytest.mark.parametrize("policy", list(Misfire))
def test_one_shot_always_fires(policy: Misfire) -> None:
    """A one-shot taken a year late still fires under every policy: losing it would lose the reminder."""
    at_ms = ms("2026-01-01T00:00:00Z")
    decision = after_misfire(Once(at_ms), at_ms, at_ms + 365 * DAY_MS, policy, 1000)
    assert decision == MisfireDecision(fire=True, next_due_ms=None, missed=0)


@pytest.mark.parametrize("policy", list(Misfire))
@pytest.mark.parametrize("late_ms", [0, 1, 999, 1000])
def test_within_grace_fires_and_continues_on_schedule(policy: Misfire, late_ms: int) -> None:
    """Up to ``grace_ms`` late is on time: fire, and the next due follows the nominal one."""
    nominal_ms = 10 * MINUTE_MS
    decision = after_misfire(EVERY_MINUTE, nominal_ms, nominal_ms + late_ms, policy, 1000)
    assert decision == MisfireDecision(fire=True, next_due_ms=11 * MINUTE_MS, missed=0)


def test_fire_all_fires_each_missed_occurrence_in_turn() -> None:
    """With fire_all a missed occurrence fires and the next due is the following nominal one, in the past."""
    now_ms = 10 * MINUTE_MS + 5
    decision = after_misfire(EVERY_MINUTE, 0, now_ms, Misfire.FIRE_ALL, 1000)
    assert decision == MisfireDecision(fire=True, next_due_ms=MINUTE_MS, missed=0)
    nominal_ms, fired = 0, 0
    while nominal_ms <= now_ms:
        step = after_misfire(EVERY_MINUTE, nominal_ms, now_ms, Misfire.FIRE_ALL, 1000)
        fired += step.fire
        assert step.next_due_ms is not None
        nominal_ms = step.next_due_ms
    assert fired == 11
    assert nominal_ms == 11 * MINUTE_MS


def test_fire_once_fires_one_catch_up_and_continues_after_now() -> None:
    """With fire_once the late occurrence fires, the others missed are counted, next is after now."""
    decision = after_misfire(EVERY_MINUTE, 0, 10 * MINUTE_MS + 5, Misfire.FIRE_ONCE, 1000)
    assert decision == MisfireDecision(fire=True, next_due_ms=11 * MINUTE_MS, missed=10)


def test_skip_fires_nothing_missed_and_keeps_an_occurrence_still_in_grace() -> None:
    """With skip nothing missed fires; an occurrence due less than ``grace_ms`` ago is next."""
    decision = after_misfire(EVERY_MINUTE, 0, 10 * MINUTE_MS + 5, Misfire.SKIP, 1000)
    assert decision == MisfireDecision(fire=False, next_due_ms=10 * MINUTE_MS, missed=10)
    decision = after_misfire(EVERY_MINUTE, 0, 10 * MINUTE_MS + 5000, Misfire.SKIP, 1000)
    assert decision == MisfireDecision(fire=False, next_due_ms=11 * MINUTE_MS, missed=11)


def test_missed_is_one_millisecond_past_grace() -> None:
    """An occurrence exactly ``grace_ms`` late is on time; one millisecond more is missed."""
    assert after_misfire(EVERY_MINUTE, 0, 1000, Misfire.SKIP, 1000).fire
    assert not after_misfire(EVERY_MINUTE, 0, 1001, Misfire.SKIP, 1000).fire


def test_cron_misfire_policies() -> None:
    """A daily cron missed for three days: fire_once catches up once, skip drops them, fire_all replays."""
    cron = Cron("0 9 * * *", "Europe/Berlin")
    nominal_ms, now_ms = ms("2026-06-01T09:00", cron.tz), ms("2026-06-04T10:00", cron.tz)
    day5_ms = ms("2026-06-05T09:00", cron.tz)
    assert after_misfire(cron, nominal_ms, now_ms, Misfire.FIRE_ONCE, 60_000) == MisfireDecision(
        True, day5_ms, 3
    )
    assert after_misfire(cron, nominal_ms, now_ms, Misfire.SKIP, 60_000) == MisfireDecision(False, day5_ms, 4)
    assert after_misfire(cron, nominal_ms, now_ms, Misfire.FIRE_ALL, 60_000) == MisfireDecision(
        True, ms("2026-06-02T09:00", cron.tz), 0
    )


def test_cron_missed_count_is_capped() -> None:
    """A minutely cron missed for a month counts at most CRON_COUNT_CAP and still continues after now."""
    cron = Cron("* * * * *")
    now_ms = ms("2026-07-01T00:00:30Z")
    decision = after_misfire(cron, now_ms - 30 * DAY_MS, now_ms, Misfire.FIRE_ONCE, 1000)
    assert decision == MisfireDecision(
        fire=True, next_due_ms=ms("2026-07-01T00:01:00Z"), missed=CRON_COUNT_CAP
    )


def test_every_missed_count_is_arithmetic() -> None:
    """A 1 ms interval missed for ten years is counted exactly, without stepping through it."""
    now_ms = 10 * 365 * DAY_MS
    decision = after_misfire(Every(1, 0), 0, now_ms, Misfire.FIRE_ONCE, 0)
    assert decision == MisfireDecision(fire=True, next_due_ms=now_ms + 1, missed=now_ms)


@given(
    interval_ms=st.integers(min_value=1, max_value=HOUR_MS),
    anchor_ms=st.integers(min_value=0, max_value=10**12),
    steps=st.integers(min_value=0, max_value=10**6),
    late_ms=st.integers(min_value=0, max_value=10 * HOUR_MS),
    grace_ms=st.integers(min_value=0, max_value=HOUR_MS),
    policy=st.sampled_from(list(Misfire)),
)
def test_every_misfire_accounts_for_every_occurrence(
    interval_ms: int, anchor_ms: int, steps: int, late_ms: int, grace_ms: int, policy: Misfire
) -> None:
    """Between the nominal and the next due, each occurrence either fires or is counted as missed."""
    every = Every(interval_ms, anchor_ms)
    nominal_ms = anchor_ms + steps * interval_ms
    now_ms = nominal_ms + late_ms
    decision = after_misfire(every, nominal_ms, now_ms, policy, grace_ms)
    assert decision.next_due_ms is not None
    assert decision.next_due_ms > nominal_ms
    assert (decision.next_due_ms - anchor_ms) % interval_ms == 0
    skipped_over = (decision.next_due_ms - nominal_ms) // interval_ms - 1
    assert decision.missed == skipped_over + (0 if decision.fire else 1)
    if policy is not Misfire.FIRE_ALL and late_ms > grace_ms:
        assert now_ms - decision.next_due_ms <= grace_ms


# --- parse_at --------------------------------------------------------------------------

NOW_MS = ms("2026-11-20T12:00:00Z")


@pytest.mark.parametrize(
    ("text", "tz", "expected_ms"),
    [
        ("2026-11-24T09:00:00+01:00", "UTC", ms("2026-11-24T08:00:00Z")),
        ("2026-11-24T08:00:00Z", "UTC", ms("2026-11-24T08:00:00Z")),
        ("2026-11-24T08:00:00.250Z", "UTC", ms("2026-11-24T08:00:00Z") + 250),
        ("2026-11-24T09:00:00+01:00", "America/New_York", ms("2026-11-24T08:00:00Z")),
        ("2026-11-24 09:00", "Europe/Berlin", ms("2026-11-24T08:00:00Z")),
        ("2026-11-24 09:00", "UTC", ms("2026-11-24T09:00:00Z")),
        ("2026-11-24T09:00", "America/New_York", ms("2026-11-24T14:00:00Z")),
        ("  2026-11-24 09:00  ", "UTC", ms("2026-11-24T09:00:00Z")),
        ("2026-11-24", "Europe/Berlin", ms("2026-11-23T23:00:00Z")),
        ("2026-10-25 02:30", "Europe/Berlin", ms("2026-10-25T00:30:00Z")),
        ("2026-03-29 02:30", "Europe/Berlin", ms("2026-03-29T01:00:00Z")),
        ("@1795510800", "UTC", 1_795_510_800_000),
        ("@1795510800.25", "UTC", 1_795_510_800_250),
        ("@0", "Europe/Berlin", 0),
        ("+5m", "UTC", NOW_MS + 300_000),
        ("+1h30m", "UTC", NOW_MS + 5_400_000),
        ("now", "UTC", NOW_MS),
        ("NOW", "UTC", NOW_MS),
    ],
)
def test_parse_at_accepts_documented_formats(text: str, tz: str, expected_ms: int) -> None:
    """ISO with offset or Z, local times in the given zone (DST-resolved), @epoch, +duration and now."""
    assert parse_at(text, NOW_MS, tz) == expected_ms


@pytest.mark.parametrize(
    "text",
    [
        "tomorrow",
        "",
        "   ",
        "@",
        "@abc",
        "@-5",
        "@1.2345",
        "+",
        "+5 parsecs",
        "+-5m",
        "2026-13-01",
        "2026-11-24 25:00",
        "9:00",
    ],
)
def test_parse_at_refuses_anything_else_listing_the_formats(text: str) -> None:
    """An unparseable time raises ScheduleError quoting it and listing what is accepted."""
    with pytest.raises(ScheduleError) as caught:
        parse_at(text, NOW_MS)
    assert str(caught.value) == f"invalid time {text!r}: {AT_FORMATS.format(tz='UTC')}"


def test_parse_at_error_names_the_zone() -> None:
    """The message says in which zone a local time would have been read."""
    with pytest.raises(ScheduleError) as caught:
        parse_at("soon", NOW_MS, "Europe/Berlin")
    assert str(caught.value) == (
        "invalid time 'soon': expected ISO-8601 such as 2026-11-24T09:00:00+01:00 or "
        "2026-11-24T08:00:00Z, a local time such as 2026-11-24 09:00 (read in Europe/Berlin), "
        "@<epoch-seconds> such as @1795510800, +<duration> such as +5m, or now"
    )


def test_parse_at_refuses_an_unknown_zone() -> None:
    """A local time in a zone tzdata does not know raises ScheduleError naming the zone."""
    with pytest.raises(ScheduleError) as caught:
        parse_at("2026-11-24 09:00", NOW_MS, "Mars/Base")
    assert str(caught.value) == "unknown time zone 'Mars/Base'"


# --- describe_next ---------------------------------------------------------------------


def test_describe_next_lists_upcoming_due_times() -> None:
    """``show`` gets the next due times of each kind of schedule, strictly after the given time."""
    at_ms = ms("2026-11-24T08:00:00Z")
    assert describe_next(Once(at_ms), at_ms - 1, 3) == [at_ms]
    assert describe_next(Once(at_ms), at_ms, 3) == []
    assert describe_next(Once(at_ms), 0, 0) == []
    assert describe_next(Every(1000, 5000), 5000, 3) == [6000, 7000, 8000]
    assert describe_next(Every(1000, 5000), 0, 0) == []
    assert upcoming(Cron("0 9 * * 1-5", "Europe/Berlin"), "2026-11-20T10:00", 3) == [
        "2026-11-23T09:00:00+01:00",
        "2026-11-24T09:00:00+01:00",
        "2026-11-25T09:00:00+01:00",
    ]
