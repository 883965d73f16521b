"""Quiet-hours math: windows across midnight, DST days in two zones, zone resolution."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reminderd.config.model import QuietHours
from reminderd.core.quiet_hours import defer_until_ms, quiet_zone, user_zone, zone_named
from reminderd.errors import ConfigError

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
NIGHT = QuietHours(start="21:00", end="08:00")


def ms(text: str) -> int:
    """Epoch ms of an ISO instant with offset, e.g. ``2024-06-10T22:30:00+02:00``."""
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def iso(epoch_ms: int | None, tz: ZoneInfo) -> str | None:
    """The instant as ISO text in ``tz`` (None stays None), for readable assertions."""
    if epoch_ms is None:
        return None
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).astimezone(tz).isoformat()


@pytest.mark.parametrize(
    ("due", "deferred"),
    [
        ("2024-06-10T22:30:00+02:00", "2024-06-11T08:00:00+02:00"),  # evening: next morning
        ("2024-06-10T21:00:00+02:00", "2024-06-11T08:00:00+02:00"),  # start is inside
        ("2024-06-11T00:00:00+02:00", "2024-06-11T08:00:00+02:00"),  # midnight
        ("2024-06-11T07:59:59+02:00", "2024-06-11T08:00:00+02:00"),  # morning: same day
        ("2024-06-11T08:00:00+02:00", None),  # end is outside
        ("2024-06-10T20:59:59+02:00", None),
        ("2024-06-10T12:00:00+02:00", None),
    ],
)
def test_window_across_midnight(due: str, deferred: str | None) -> None:
    """A 21:00-08:00 window defers evening times to next morning and early times to the same morning."""
    assert iso(defer_until_ms(ms(due), NIGHT, BERLIN), BERLIN) == deferred


@pytest.mark.parametrize(
    ("due", "deferred"),
    [
        ("2024-06-10T12:00:00-04:00", "2024-06-10T14:00:00-04:00"),
        ("2024-06-10T13:59:00-04:00", "2024-06-10T14:00:00-04:00"),
        ("2024-06-10T11:59:00-04:00", None),
        ("2024-06-10T14:00:00-04:00", None),
        ("2024-06-10T23:00:00-04:00", None),
    ],
)
def test_window_within_one_day(due: str, deferred: str | None) -> None:
    """A 12:00-14:00 window defers only times inside it, to 14:00 of the same day."""
    window = QuietHours(start="12:00", end="14:00")
    assert iso(defer_until_ms(ms(due), window, NEW_YORK), NEW_YORK) == deferred


def test_window_is_read_in_the_given_zone() -> None:
    """The same instant is quiet in one zone and not in another."""
    due = ms("2024-06-10T22:30:00+02:00")  # 16:30 in New York
    assert defer_until_ms(due, NIGHT, NEW_YORK) is None
    assert defer_until_ms(due, NIGHT, BERLIN) == ms("2024-06-11T08:00:00+02:00")


def test_empty_window_never_defers() -> None:
    """start == end is an empty window."""
    assert (
        defer_until_ms(ms("2024-06-10T22:30:00+02:00"), QuietHours(start="22:00", end="22:00"), BERLIN)
        is None
    )


@pytest.mark.parametrize(
    ("zone", "due", "deferred"),
    [
        # Berlin springs forward 2024-03-31 02:00 CET -> 03:00 CEST: the night is one hour shorter.
        (BERLIN, "2024-03-30T23:00:00+01:00", "2024-03-31T08:00:00+02:00"),
        # Berlin falls back 2024-10-27 03:00 CEST -> 02:00 CET: the night is one hour longer.
        (BERLIN, "2024-10-26T23:00:00+02:00", "2024-10-27T08:00:00+01:00"),
        (BERLIN, "2024-10-27T02:30:00+01:00", "2024-10-27T08:00:00+01:00"),
        # New York springs forward 2024-03-10 02:00 EST -> 03:00 EDT, falls back 2024-11-03.
        (NEW_YORK, "2024-03-09T23:00:00-05:00", "2024-03-10T08:00:00-04:00"),
        (NEW_YORK, "2024-03-10T03:30:00-04:00", "2024-03-10T08:00:00-04:00"),
        (NEW_YORK, "2024-11-02T22:00:00-04:00", "2024-11-03T08:00:00-05:00"),
        (NEW_YORK, "2024-11-03T01:30:00-05:00", "2024-11-03T08:00:00-05:00"),
    ],
)
def test_night_window_on_dst_days(zone: ZoneInfo, due: str, deferred: str) -> None:
    """On DST change days the deferral lands on 08:00 local wall time, whatever the offset did overnight."""
    assert iso(defer_until_ms(ms(due), NIGHT, zone), zone) == deferred


def test_end_inside_a_spring_forward_gap_defers_to_the_jump() -> None:
    """An end time the clock skips (02:30 on 2024-03-31 in Berlin) defers to 03:00 CEST, the jump."""
    window = QuietHours(start="01:00", end="02:30")
    got = defer_until_ms(ms("2024-03-31T01:30:00+01:00"), window, BERLIN)
    assert iso(got, BERLIN) == "2024-03-31T03:00:00+02:00"


@pytest.mark.parametrize(
    ("due", "deferred"),
    [
        ("2024-10-27T02:15:00+02:00", "2024-10-27T02:30:00+02:00"),  # first pass: first 02:30
        ("2024-10-27T02:15:00+01:00", "2024-10-27T02:30:00+01:00"),  # second pass: second 02:30
    ],
)
def test_end_inside_a_fall_back_repeat_is_the_next_one(due: str, deferred: str) -> None:
    """An end time the clock shows twice defers to its first showing after the due instant."""
    window = QuietHours(start="01:00", end="02:30")
    assert iso(defer_until_ms(ms(due), window, BERLIN), BERLIN) == deferred


@settings(max_examples=300, deadline=None)
@given(
    due_s=st.integers(min_value=1_700_000_000, max_value=1_800_000_000),
    start=st.tuples(st.integers(0, 23), st.integers(0, 59)),
    end=st.tuples(st.integers(0, 23), st.integers(0, 59)),
    zone=st.sampled_from([BERLIN, NEW_YORK, ZoneInfo("Australia/Lord_Howe"), ZoneInfo("UTC")]),
)
def test_a_deferred_occurrence_fires_exactly_once(
    due_s: int, start: tuple[int, int], end: tuple[int, int], zone: ZoneInfo
) -> None:
    """The deferral instant is later than the due time, within a day, and itself outside the window."""
    window = QuietHours(start=f"{start[0]:02d}:{start[1]:02d}", end=f"{end[0]:02d}:{end[1]:02d}")
    due_ms = due_s * 1000
    deferred = defer_until_ms(due_ms, window, zone)
    if deferred is not None:
        assert due_ms < deferred <= due_ms + 25 * 3600 * 1000
        assert defer_until_ms(deferred, window, zone) is None


def test_user_zone_takes_the_first_valid_candidate() -> None:
    """Payload zone first, then the lookup hash, skipping invalid names, then the default."""
    assert user_zone(["Asia/Tokyo", "Europe/Berlin"], "UTC").key == "Asia/Tokyo"
    assert (
        user_zone(["Mars/Base", None, 42, "", "../etc/passwd", "Europe/Berlin"], "UTC").key == "Europe/Berlin"
    )
    assert user_zone([None], "America/New_York").key == "America/New_York"


def test_user_zone_with_a_bad_default_is_a_config_error() -> None:
    """A configured default that is no zone is reported as a config error."""
    with pytest.raises(ConfigError, match=r"^unknown time zone 'Mars/Base'$"):
        user_zone([None], "Mars/Base")


def test_quiet_zone_reads_the_rule_fields() -> None:
    """quiet_zone uses the rule's tz_field in payload, then lookup hash, then default_tz."""
    window = QuietHours(start="21:00", end="08:00", default_tz="Europe/Berlin", tz_field="zone")
    assert quiet_zone({"zone": "Asia/Tokyo", "tz": "UTC"}, window).key == "Asia/Tokyo"
    assert quiet_zone({"tz": "UTC"}, window, {"zone": "America/New_York"}).key == "America/New_York"
    assert quiet_zone({}, window, {}).key == "Europe/Berlin"


@pytest.mark.parametrize("name", ["", "Nope/Zone", "/etc/localtime", "x" * 100, None, 3])
def test_zone_named_refuses_non_zones(name: object) -> None:
    """Anything that is not an IANA zone name gives None, never an exception."""
    assert zone_named(name) is None
