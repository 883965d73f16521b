"""The APScheduler quarantine: crontab parsing and matching, and zone names."""

from __future__ import annotations

from datetime import datetime

import pytest

from reminderd.core.cron import cron_next_wall, validate_cron
from reminderd.core.zones import load_zone
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
