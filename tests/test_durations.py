"""Human durations: what is accepted, what is refused and with which message."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reminderd.core.durations import format_ms, parse_duration_ms


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("500ms", 500),
        ("30s", 30_000),
        ("5m", 300_000),
        ("24h", 86_400_000),
        ("7d", 604_800_000),
        ("1h30m", 5_400_000),
        ("1d2h3m4s5ms", 93_784_005),
        ("1.5s", 1500),
        ("0.25h", 900_000),
        ("0", 0),
        ("0s", 0),
        ("30", 30_000),
        ("2.5", 2500),
        (" 5s ", 5000),
        ("5S", 5000),
        ("1H30M", 5_400_000),
    ],
)
def test_parses_text(text: str, ms: int) -> None:
    """Units, compounds, bare seconds, case and surrounding blanks are understood."""
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize(
    ("value", "ms"),
    [(0, 0), (1, 1000), (30, 30_000), (0.5, 500), (1.25, 1250), (0.0004, 0), (0.0006, 1)],
)
def test_numbers_are_seconds(value: float, ms: int) -> None:
    """An int or float (YAML ``sweep_interval: 30``) is seconds, rounded to whole ms."""
    assert parse_duration_ms(value) == ms


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "invalid duration '': expected e.g. 500ms, 30s, 5m, 24h, 7d"),
        ("   ", "invalid duration '   ': expected e.g. 500ms, 30s, 5m, 24h, 7d"),
        ("5x", "invalid duration '5x': expected e.g. 500ms, 30s, 5m, 24h, 7d"),
        ("1s5", "invalid duration '1s5': expected e.g. 500ms, 30s, 5m, 24h, 7d"),
        ("ms", "invalid duration 'ms': expected e.g. 500ms, 30s, 5m, 24h, 7d"),
        ("s", "invalid duration 's': expected e.g. 500ms, 30s, 5m, 24h, 7d"),
        ("1 h", "invalid duration '1 h': expected e.g. 500ms, 30s, 5m, 24h, 7d"),
        ("1h 30m", "invalid duration '1h 30m': expected e.g. 500ms, 30s, 5m, 24h, 7d"),
        (".5s", "invalid duration '.5s': expected e.g. 500ms, 30s, 5m, 24h, 7d"),
        ("1e3", "invalid duration '1e3': expected e.g. 500ms, 30s, 5m, 24h, 7d"),
        ("1_000", "invalid duration '1_000': expected e.g. 500ms, 30s, 5m, 24h, 7d"),
        ("nan", "invalid duration 'nan': expected e.g. 500ms, 30s, 5m, 24h, 7d"),
        ("inf", "invalid duration 'inf': expected e.g. 500ms, 30s, 5m, 24h, 7d"),
        ("٣s", "invalid duration '٣s': expected e.g. 500ms, 30s, 5m, 24h, 7d"),
        ("-", "invalid duration '-': expected e.g. 500ms, 30s, 5m, 24h, 7d"),
        ("-5x", "invalid duration '-5x': expected e.g. 500ms, 30s, 5m, 24h, 7d"),
        ("-1s", "duration '-1s' must not be negative"),
        ("-5", "duration '-5' must not be negative"),
        ("-1h30m", "duration '-1h30m' must not be negative"),
        (-1, "duration -1 must not be negative"),
        (-0.5, "duration -0.5 must not be negative"),
        (float("inf"), "duration inf must be a finite number"),
        (float("nan"), "duration nan must be a finite number"),
        ("1" + "0" * 400, f"duration '{'1' + '0' * 400}' must be a finite number"),
        (True, "expected a duration such as 500ms, 30s, 5m or 24h, got bool"),
        (False, "expected a duration such as 500ms, 30s, 5m or 24h, got bool"),
        (None, "expected a duration such as 500ms, 30s, 5m or 24h, got NoneType"),
        ([1], "expected a duration such as 500ms, 30s, 5m or 24h, got list"),
        ({"s": 1}, "expected a duration such as 500ms, 30s, 5m or 24h, got dict"),
    ],
)
def test_rejects_bad_values(value: object, message: str) -> None:
    """Every bad value raises ValueError (never another type) with a message saying what was expected."""
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        parse_duration_ms(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "0ms"),
        (1, "1ms"),
        (250, "250ms"),
        (1000, "1s"),
        (1500, "1s500ms"),
        (60_000, "1m"),
        (3_723_000, "1h2m3s"),
        (86_400_000, "1d"),
        (90_061_001, "1d1h1m1s1ms"),
        (-250, "-250ms"),
        (-1500, "-1s500ms"),
    ],
)
def test_format_ms(ms: int, text: str) -> None:
    """Milliseconds render compactly, largest unit first, without dropping a remainder."""
    assert format_ms(ms) == text


@given(st.integers(min_value=0, max_value=10**15))
def test_format_round_trips(ms: int) -> None:
    """Whatever format_ms prints, parse_duration_ms reads back to the same milliseconds."""
    assert parse_duration_ms(format_ms(ms)) == ms


@given(st.one_of(st.text(), st.integers(), st.floats(), st.booleans(), st.none()))
def test_never_raises_anything_but_value_error(value: object) -> None:
    """Arbitrary input either parses to a non-negative int or raises ValueError, nothing else."""
    try:
        ms = parse_duration_ms(value)  # type: ignore[arg-type]
    except ValueError:
        return
    assert isinstance(ms, int)
    assert ms >= 0
