"""Logging: JSON lines, level filtering, reconfiguration and secret masking."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import structlog

from reminderd.core.pii import mask_url
from reminderd.errors import ConfigError
from reminderd.telemetry.logs import configure_logging, get_logger


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    """Leave structlog and the root logger as they were."""
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == "reminderd"]:
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    """Every line written so far, each parsed as one JSON object."""
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_json_one_object_per_event() -> None:
    """Each event is one line holding one JSON object with level, ISO UTC timestamp and fields."""
    out = io.StringIO()
    configure_logging("info", "auto", stream=out)
    log = get_logger("t")
    log.info("reminder.fired", key="send_message-42-daily", lateness_ms=12)
    log.warning("reminder.late", key="k\nwith newline")
    events = lines(out)
    assert len(events) == 2
    assert events[0]["event"] == "reminder.fired"
    assert events[0]["level"] == "info"
    assert events[0]["lateness_ms"] == 12
    assert events[0]["timestamp"].endswith("Z")
    assert events[1]["key"] == "k\nwith newline"


def test_level_filtering_and_reconfiguration() -> None:
    """Events below the level are dropped, and reconfiguring changes the level of existing loggers."""
    out = io.StringIO()
    configure_logging("warning", "json", stream=out)
    log = get_logger()
    log.info("dropped")
    log.warning("kept")
    configure_logging("debug", "json", stream=out)
    log.debug("now.kept")
    assert [e["event"] for e in lines(out)] == ["kept", "now.kept"]


def test_secret_keys_are_masked() -> None:
    """Values of password/token/auth/secret keys are masked, nested ones too, event text kept."""
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    get_logger().info(
        "password.changed",
        password="hunter2",
        twilio_token="tok",
        auth=("user", "pw"),
        client_secret="s",
        headers={"Authorization": "Bearer abc", "Accept": "json"},
        items=[{"api_key": "k1"}],
        user="alice",
    )
    event = lines(out)[0]
    assert event["event"] == "password.changed"
    assert event["password"] == "***"
    assert event["twilio_token"] == "***"
    assert event["auth"] == "***"
    assert event["client_secret"] == "***"
    assert event["headers"] == {"Authorization": "***", "Accept": "json"}
    assert event["items"] == [{"api_key": "***"}]
    assert event["user"] == "alice"
    assert "hunter2" not in out.getvalue()


def test_url_passwords_are_masked() -> None:
    """A password inside a URL is masked, the rest of the URL is kept."""
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    get_logger().info("redis.connecting", url="redis://default:s3cret@db:6379/0", plain="redis://db:6379")
    event = lines(out)[0]
    assert event["url"] == "redis://default:***@db:6379/0"
    assert event["plain"] == "redis://db:6379"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("redis://default:s3cret@db:6379/0", "redis://default:***@db:6379/0"),
        ("redis://:s3cret@db", "redis://:***@db"),
        ("https://tok3n@hooks.example.com/x", "https://***@hooks.example.com/x"),
        ("redis://u:p@ss@db/0", "redis://u:***@db/0"),
        ("redis://u:@db", "redis://u:@db"),
        ("two: redis://a:x@h1/0 and http://b:y@h2", "two: redis://a:***@h1/0 and http://b:***@h2"),
        ("http://db/path?to=a@b", "http://db/path?to=a@b"),
        ("no url at all@", "no url at all@"),
    ],
)
def test_mask_url_hides_every_credential(text: str, shown: str) -> None:
    """Every URL's password, or a lone user part, is masked wherever it sits in a text; nothing else."""
    assert mask_url(text) == shown


def test_context_variables_are_merged() -> None:
    """Values bound with structlog contextvars appear in every event."""
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    structlog.contextvars.bind_contextvars(key="send_message-1-x", occurrence=3)
    get_logger().info("processor.done")
    event = lines(out)[0]
    assert (event["key"], event["occurrence"]) == ("send_message-1-x", 3)


def test_exception_stays_on_one_line() -> None:
    """log.exception renders the traceback into a field of the one JSON line."""
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    try:
        raise ValueError("boom")
    except ValueError:
        get_logger().exception("processor.crashed")
    events = lines(out)
    assert len(events) == 1
    assert "ValueError: boom" in events[0]["exception"]


def test_stdlib_records_share_the_format_once() -> None:
    """A library's stdlib log record becomes one JSON line, even after reconfiguring twice."""
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    configure_logging("info", "json", stream=out)
    logging.getLogger("apscheduler.scheduler").warning("job %s missed by %ss", "sweep", 2)
    events = lines(out)
    assert len(events) == 1
    assert events[0]["logger"] == "apscheduler.scheduler"
    assert events[0]["level"] == "warning"
    assert events[0]["event"] == "job sweep missed by 2s"


def test_console_format_is_not_json() -> None:
    """fmt=console renders readable text with the event name and fields."""
    out = io.StringIO()
    configure_logging("info", "console", stream=out)
    get_logger().info("reminder.fired", key="k1", token="t")
    text = out.getvalue()
    assert "reminder.fired" in text
    assert "key=k1" in text
    assert "token=***" in text
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(text)


def test_console_line_puts_the_key_first_and_writes_values_plainly() -> None:
    """On a terminal the key follows the event, fields keep their order, no Python reprs, None is -."""
    out = io.StringIO()
    configure_logging("info", "console", stream=out)
    get_logger().info("reminder.fired", user_id="42", key="send_message-42-daily", processors={"log": "ok"},
                      next_due_ms=None)  # fmt: skip
    line = out.getvalue().splitlines()[0]
    event_at = line.index("reminder.fired")
    assert line.index("key=send_message-42-daily") > event_at
    assert line.index("key=") < line.index("user_id=42")
    assert "processors={log:ok}" in line
    assert "next_due_ms=-" in line
    assert "{'log'" not in line
    assert "None" not in line


def test_bad_level_is_rejected() -> None:
    """An unknown level names the setting and the accepted values."""
    with pytest.raises(ConfigError) as info:
        configure_logging("loud", "json")
    assert str(info.value) == (
        "logging.level: unknown level 'loud' (expected one of debug, info, warning, error, critical)"
    )


def test_bad_format_is_rejected() -> None:
    """An unknown format names the setting and the accepted values."""
    with pytest.raises(ConfigError) as info:
        configure_logging("info", "xml")  # type: ignore[arg-type]
    assert str(info.value) == "logging.format: unknown format 'xml' (expected auto, json or console)"
