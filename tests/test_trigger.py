"""The trigger key contract ``<prefix>-<userId>-<type>``: parse, format, require."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reminderd.core import trigger_keys
from reminderd.core.trigger_keys import (
    MAX_KEY_BYTES,
    Rejection,
    TriggerKey,
    format_key,
    parse_key,
    prefix_problem,
)
from reminderd.errors import KeyNameError

PREFIXES = ("send_message",)
UUID = "123e4567-e89b-12d3-a456-426614174000"


def test_parses_the_documented_example() -> None:
    """``send_message-42-daily`` is rule send_message, user 42, type daily."""
    assert parse_key("send_message-42-daily", PREFIXES) == TriggerKey("send_message", "42", "daily")


def test_uuid_user_id_keeps_its_dashes() -> None:
    """The type is after the last dash, so a UUID user id survives whole."""
    parsed = parse_key(f"send_message-{UUID}-daily", PREFIXES)
    assert parsed == TriggerKey("send_message", UUID, "daily")


def test_bytes_names_are_decoded() -> None:
    """A key name as Redis delivers it (bytes) parses like the text."""
    assert parse_key(b"send_message-42-daily", PREFIXES) == TriggerKey("send_message", "42", "daily")


def test_name_property_formats_the_key() -> None:
    """``TriggerKey.name`` is the Redis key name it was parsed from."""
    assert TriggerKey("send_message", UUID, "daily").name == f"send_message-{UUID}-daily"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("send-message-42-daily", TriggerKey("send-message", "42", "daily")),
        ("send-x-42-daily", TriggerKey("send", "x-42", "daily")),
        ("send-42-daily", TriggerKey("send", "42", "daily")),
        ("send-message-x-daily", TriggerKey("send-message", "x", "daily")),
    ],
)
@pytest.mark.parametrize("prefixes", [("send", "send-message"), ("send-message", "send")])
def test_longest_prefix_wins(name: str, expected: TriggerKey, prefixes: tuple[str, ...]) -> None:
    """With prefixes ``send`` and ``send-message``, the longest matching one owns the key, in any order."""
    assert parse_key(name, prefixes) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("send_message-😀-daily", TriggerKey("send_message", "😀", "daily")),
        ("send_message-42-🎂", TriggerKey("send_message", "42", "🎂")),
        ("send_message-Zoë Müller-rappel", TriggerKey("send_message", "Zoë Müller", "rappel")),
        ("send_message-用户-每日", TriggerKey("send_message", "用户", "每日")),
        ("send_message-4 2-daily", TriggerKey("send_message", "4 2", "daily")),
        ("send_message-42-dai ly", TriggerKey("send_message", "42", "dai ly")),
        ("send_message--1-daily", TriggerKey("send_message", "-1", "daily")),
        ("send_message-a--b-daily", TriggerKey("send_message", "a--b", "daily")),
        ("send_message-42-daily_9", TriggerKey("send_message", "42", "daily_9")),
    ],
)
def test_accepts_unusual_but_valid_names(name: str, expected: TriggerKey) -> None:
    """Unicode, emoji, inner spaces and inner dashes in the user id are fine and round-trip."""
    assert parse_key(name, PREFIXES) == expected
    assert format_key(expected.rule, expected.user_id, expected.type) == name


LONG_USER = "u" * 10_000


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "matches no configured rule prefix"),
        ("-", "matches no configured rule prefix"),
        ("---", "matches no configured rule prefix"),
        ("send_message", "matches no configured rule prefix"),
        ("send_messageX-42-daily", "matches no configured rule prefix"),
        ("Send_message-42-daily", "matches no configured rule prefix"),
        (" send_message-42-daily", "matches no configured rule prefix"),
        ("other-42-daily", "matches no configured rule prefix"),
        ("send_message-", "expected <prefix>-<userId>-<type>, found no type"),
        ("send_message-42", "expected <prefix>-<userId>-<type>, found no type"),
        ("send_message--daily", "user id is empty"),
        ("send_message-42-", "type is empty"),
        ("send_message--", "user id is empty"),
        ("send_message---", "user id contains only '-'"),
        ("send_message---daily", "user id contains only '-'"),
        ("send_message----daily", "user id contains only '-'"),
        ("send_message-42--", "type is empty"),
        ("send_message- 42-daily", "user id has leading or trailing whitespace"),
        ("send_message-42 -daily", "user id has leading or trailing whitespace"),
        ("send_message-42- daily", "type has leading or trailing whitespace"),
        ("send_message-42-daily ", "type has leading or trailing whitespace"),
        ("send_message-\u00a042-daily", "user id has leading or trailing whitespace"),
        ("send_message-42-daily\u3000", "type has leading or trailing whitespace"),
        ("send_message-4\t2-daily", "user id contains a control character"),
        ("send_message-4\n2-daily", "user id contains a control character"),
        ("send_message-4\x002-daily", "user id contains a control character"),
        ("send_message-42-da\x1bily", "type contains a control character"),
        ("send_message-42-da\x7fily", "type contains a control character"),
        ("send_message-42-da\x85ily", "type contains a control character"),
        ("send_message-42-da\x9fily", "type contains a control character"),
        ("send_message-4\ud8002-daily", "not valid UTF-8"),
        ("send_message-42-\udfff", "not valid UTF-8"),
    ],
)
def test_rejects_hostile_names(name: str, reason: str) -> None:
    """Each malformed name yields a Rejection carrying the name and the exact reason."""
    assert parse_key(name, PREFIXES) == Rejection(name, reason)


def test_rejects_ten_kilobyte_names_and_shortens_them() -> None:
    """A 10 KB name is refused for its length, and the rejection shows only its first 200 characters."""
    name = f"send_message-{LONG_USER}-daily"
    assert parse_key(name, PREFIXES) == Rejection(name[:200] + "...", f"longer than {MAX_KEY_BYTES} bytes")


def test_length_limit_counts_utf8_bytes() -> None:
    """The limit is 1024 UTF-8 bytes: exactly 1024 passes, one more fails, wide characters count as bytes."""
    head = "send_message-"
    fits = head + "u" * (MAX_KEY_BYTES - len(head) - len("-d")) + "-d"
    assert len(fits.encode()) == MAX_KEY_BYTES
    assert isinstance(parse_key(fits, PREFIXES), TriggerKey)
    too_long = head + "u" * (MAX_KEY_BYTES - len(head) - len("-d") + 1) + "-d"
    assert parse_key(too_long, PREFIXES) == Rejection(too_long[:200] + "...", "longer than 1024 bytes")
    wide = head + "é" * 510 + "-d"  # 510 characters, 1020 bytes
    assert len(wide) < MAX_KEY_BYTES < len(wide.encode())
    assert parse_key(wide, PREFIXES) == Rejection(wide[:200] + "...", "longer than 1024 bytes")


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (b"\xff\xfe", "b'\\xff\\xfe'"),
        (b"send_message-42-\xc3", "b'send_message-42-\\xc3'"),
        (b"send_message-\xed\xa0\x80-daily", "b'send_message-\\xed\\xa0\\x80-daily'"),
        (b"\x80" * 200, repr(b"\x80" * 80)),
    ],
)
def test_rejects_bytes_that_are_not_utf8(raw: bytes, shown: str) -> None:
    """Binary names are refused as not UTF-8 and shown as a bounded bytes repr."""
    assert parse_key(raw, PREFIXES) == Rejection(shown, "not valid UTF-8")


def test_no_prefixes_means_nothing_matches() -> None:
    """With no rules configured every name is rejected, none raises."""
    assert parse_key("send_message-42-daily", ()) == Rejection(
        "send_message-42-daily", "matches no configured rule prefix"
    )


def test_prefixes_may_be_any_iterable() -> None:
    """Prefixes can come from a generator (e.g. ``settings.rules`` keys) and are read once."""
    parsed = parse_key("b-1-t", (p for p in ["a", "b"]))
    assert parsed == TriggerKey("b", "1", "t")


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        (("", "42", "daily"), "cannot build key: prefix is empty"),
        (("send_message", "", "daily"), "cannot build key: user id is empty"),
        (("send_message", "42", ""), "cannot build key: type is empty"),
        (("send_message", "-", "daily"), "cannot build key: user id contains only '-'"),
        (("send_message", "42", "-"), "cannot build key: type contains only '-'"),
        (("send_message", "42", "a-b"), "cannot build key: type 'a-b' must not contain '-'"),
        (("send_message", " 42", "daily"), "cannot build key: user id has leading or trailing whitespace"),
        (("send_message", "42", "daily\n"), "cannot build key: type has leading or trailing whitespace"),
        ((" send", "42", "daily"), "cannot build key: prefix has leading or trailing whitespace"),
        (("send_message", "4\x002", "daily"), "cannot build key: user id contains a control character"),
        (("send_message", "4\ud8002", "daily"), "cannot build key: user id is not valid UTF-8"),
        (("send_message", LONG_USER, "daily"), "cannot build key: longer than 1024 bytes"),
    ],
)
def test_format_key_refuses_parts_that_cannot_round_trip(parts: tuple[str, str, str], message: str) -> None:
    """format_key raises KeyNameError with the exact reason instead of building an unparsable key."""
    with pytest.raises(KeyNameError, match=f"^{re.escape(message)}$"):
        format_key(*parts)


@pytest.mark.parametrize(
    ("prefix", "problem"),
    [
        ("send_message", None),
        ("send-message", None),
        ("a", None),
        ("", "prefix is empty"),
        ("-", "prefix contains only '-'"),
        ("---", "prefix contains only '-'"),
        (" send", "prefix has leading or trailing whitespace"),
        ("se\nnd", "prefix contains a control character"),
    ],
)
def test_prefix_problem(prefix: str, problem: str | None) -> None:
    """prefix_problem says why a rule name cannot be a key prefix, or None when it can."""
    assert prefix_problem(prefix) == problem


# Hypothesis: every text including lone surrogates and control characters.
ANY_CHAR = st.characters(exclude_categories=())
PREFIX_SETS = st.lists(st.sampled_from(["send_message", "send", "send-message", "a", "é"]), min_size=1)


def _check_parse(name: str | bytes, prefixes: list[str]) -> None:
    parsed = parse_key(name, prefixes)
    if isinstance(parsed, TriggerKey):
        text = name.decode() if isinstance(name, bytes) else name
        assert format_key(parsed.rule, parsed.user_id, parsed.type) == text
        assert parsed.rule in prefixes
    else:
        assert isinstance(parsed, Rejection)
        assert parsed.reason


@given(st.text(ANY_CHAR), PREFIX_SETS)
def test_arbitrary_text_never_raises(name: str, prefixes: list[str]) -> None:
    """Any text either parses into parts that format back to the same name, or is a Rejection."""
    _check_parse(name, prefixes)


@given(
    st.sampled_from(["send_message", "send", "send-message"]),
    st.text(ANY_CHAR),
    st.text(ANY_CHAR),
    PREFIX_SETS,
)
def test_prefixed_text_never_raises(prefix: str, user: str, type_: str, prefixes: list[str]) -> None:
    """Names that do start with a configured prefix, with arbitrary rest, round-trip or are rejected."""
    _check_parse(f"{prefix}-{user}-{type_}", [*prefixes, prefix])


@given(st.binary(), PREFIX_SETS)
def test_arbitrary_bytes_never_raise(name: bytes, prefixes: list[str]) -> None:
    """Any bytes either parse into parts that format back to the decoded name, or are a Rejection."""
    _check_parse(name, prefixes)


@given(st.text(ANY_CHAR, min_size=1), st.text(ANY_CHAR, min_size=1))
def test_formatted_keys_parse_back(user: str, type_: str) -> None:
    """Whatever format_key accepts, parse_key (single prefix) returns the same parts."""
    try:
        name = format_key("send_message", user, type_)
    except KeyNameError:
        return
    assert parse_key(name, PREFIXES) == TriggerKey("send_message", user, type_)


def _reference(name: str, prefixes: list[str]) -> TriggerKey | Rejection:
    """The general path alone (every character checked), which the plain-name path must match."""
    shown = name if len(name) <= 200 else name[:200] + "..."
    for prefix in sorted(prefixes, key=len, reverse=True):
        if name.startswith(prefix + "-"):
            return trigger_keys._split(name, shown, prefix)
    return Rejection(shown, "matches no configured rule prefix")


@given(
    st.sampled_from(["send_message", "send", "send-message", "x"]),
    st.text(st.sampled_from("ab-_:9"), max_size=8),
    PREFIX_SETS,
)
def test_plain_ascii_names_get_the_general_paths_verdict(prefix: str, rest: str, prefixes: list[str]) -> None:
    """A printable ASCII name (the fast path) gets exactly the verdict of the full character check."""
    name = f"{prefix}-{rest}"
    assert parse_key(name, [*prefixes, prefix]) == _reference(name, [*prefixes, prefix])
