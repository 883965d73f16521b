"""SMS end to end: ``python -m reminderd run`` as a subprocess, a private Redis, a loopback Twilio.

Each test is one acceptance row of the SMS feature: the right body to the right number,
retries that honour ``Retry-After``, dead letters carrying the provider's code, opt-outs,
template and recipient errors, quiet hours, the rate limit shared by two daemons, and no
phone number or credential in any log line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis
import yaml

from reminderd.api import Reminders, When
from reminderd.config import load_config
from tests.daemon_proc import DaemonProcess, Event, wait_until, write_config
from tests.twilio_server import AUTH_TOKEN, SmsRequest, TwilioReply, TwilioServer

FROM = "+14155550100"
ADA = "+4915112345678"  # payload number, user 42
BOB = "+819012345678"  # lookup-hash number, user 77
CARL = "+12125550199"  # payload number, no zone
PHONES = (FROM, ADA, BOB, CARL)
TOKEN_ENV = "TWILIO_AUTH_TOKEN"
TEMPLATES = {
    "default": "Reminder {type} for user {user_id}",
    "daily": "Hi {payload.name}, your check-in is at {due_local:%Y-%m-%d %H:%M:%S} ({tz})",
    "welcome": "Welcome! Signed up {due_local:%d.%m. %H:%M:%S} {tz}",
}


@pytest.fixture
def twilio() -> Iterator[TwilioServer]:
    """A loopback Twilio Messages API."""
    with TwilioServer() as server:
        yield server


@pytest.fixture
def daemons(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[DaemonProcess]]:
    """Daemons started by the test; at the end every log is checked for numbers and the token."""
    monkeypatch.setenv(TOKEN_ENV, AUTH_TOKEN)  # the config reads ${TWILIO_AUTH_TOKEN}
    started: list[DaemonProcess] = []
    yield started
    try:
        for d in started:
            d.stop(timeout_s=20)  # SIGTERM: the drain and shutdown lines are scanned too
        assert_logs_hold_no_secrets(started)
    finally:
        for d in started:
            d.close()


def sms_processor(twilio: TwilioServer, **overrides: Any) -> dict[str, Any]:
    """The ``sms`` processor section pointing at ``twilio``; keyword arguments replace keys."""
    section: dict[str, Any] = {
        "type": "sms",
        "twilio": {
            "base_url": twilio.base_url,
            "account_sid": twilio.account_sid,
            "auth_token": "${" + TOKEN_ENV + "}",
            "from": FROM,
        },
        "recipient": {"lookup": {"key": "user:{user_id}"}},
        "templates": TEMPLATES,
        "timezone": "Europe/Berlin",
        "request_timeout": "2s",
        "timeout": "5s",
    }
    section.update(overrides)
    return section


def sms_config(
    tmp_path: Path, redis_url: str, twilio: TwilioServer, *, rule: dict[str, Any] | None = None, **extra: Any
) -> Path:
    """A config with one SMS rule ``send_message``; ``extra`` adds or merges top-level sections."""
    sections: dict[str, Any] = {
        "processors": {"sms": sms_processor(twilio)},
        "rules": {"send_message": {"processors": ["sms"], **(rule or {})}},
        "retry": {"max_attempts": 4, "backoff": "100ms", "backoff_max": "1s", "jitter": 0},
    }
    sections.update(extra)
    return write_config(tmp_path / "cfg.yaml", redis_url, **sections)


def start(daemons: list[DaemonProcess], cfg: Path, name: str = "d") -> DaemonProcess:
    """Start one daemon on ``cfg`` and remember it for the cleanup."""
    d = DaemonProcess(cfg, name=name)
    daemons.append(d)
    return d.start()


def api(cfg: Path, url: str) -> Reminders:
    """The sync Python API on the test's Redis."""
    return Reminders(url, load_config(cfg))


def redis_now_ms(client: redis.Redis) -> int:
    """Redis's clock, which decides when reminders are due."""
    sec, usec = client.time()
    return int(sec) * 1000 + int(usec) // 1000


def local(due_ms: int, zone: str, spec: str) -> str:
    """``due_ms`` shown in ``zone`` with ``strftime`` spec ``spec``."""
    return datetime.fromtimestamp(due_ms / 1000, ZoneInfo(zone)).strftime(spec)


def dead_letters(cfg: Path) -> list[dict[str, Any]]:
    """``reminderd dead list --json``, run as the CLI a user would run."""
    out = subprocess.run(
        [sys.executable, "-m", "reminderd", "dead", "list", "--json", "--config", str(cfg)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    result: list[dict[str, Any]] = json.loads(out.stdout)
    return result


def by_key(events: list[Event]) -> dict[str, Event]:
    """Log events indexed by their ``key`` field."""
    return {e["key"]: e for e in events}


def assert_logs_hold_no_secrets(started: list[DaemonProcess]) -> None:
    """No daemon log contains a raw test phone number (with or without ``+``) or the auth token."""
    needles = [AUTH_TOKEN, *PHONES, *(p.lstrip("+") for p in PHONES)]
    for d in started:
        text = d.log_path.read_text(errors="replace")
        leaked = [n for n in needles if n in text]
        assert not leaked, f"{d.log_path.name} leaks {len(leaked)} secret(s)"


def test_each_type_sends_its_template_to_the_right_number(
    tmp_path: Path,
    redis_url: str,
    twilio: TwilioServer,
    daemons: list[DaemonProcess],
    sync_redis: redis.Redis,
) -> None:
    """Each type's template reaches its number (payload or lookup hash), due time in the user's zone."""
    cfg = sms_config(tmp_path, redis_url, twilio)
    sync_redis.hset("user:77", mapping={"phone": BOB, "tz": "Asia/Tokyo"})
    d = start(daemons, cfg)
    due_ms = redis_now_ms(sync_redis) + 1500
    with api(cfg, redis_url) as r:
        payload = {"phone": ADA, "name": "Ada", "tz": "America/New_York"}
        r.schedule("send_message-42-daily", when=When(at=due_ms), payload=payload)
        r.schedule("send_message-9-invoice", when=When(at=due_ms), payload={"phone": CARL})
    sync_redis.set("send_message-77-welcome", "1", px=max(1, due_ms - redis_now_ms(sync_redis)))
    sent = {req.to: req for req in twilio.wait_for(3, timeout_s=10)}
    fired = by_key(d.wait_for("reminder.fired", count=3))
    welcome_due = fired["send_message-77-welcome"]["due_ms"]
    assert {to: req.body for to, req in sent.items()} == {
        ADA: f"Hi Ada, your check-in is at {local(due_ms, 'America/New_York', '%Y-%m-%d %H:%M:%S')}"
        " (America/New_York)",
        BOB: f"Welcome! Signed up {local(welcome_due, 'Asia/Tokyo', '%d.%m. %H:%M:%S')} Asia/Tokyo",
        CARL: "Reminder invoice for user 9",
    }
    assert all(req.form["From"] == FROM and req.authorized for req in sent.values())
    assert fired["send_message-42-daily"]["sms.message_id"] == sent[ADA].sid
    assert fired["send_message-42-daily"]["sms.to"] == "+4915*******78"
    with api(cfg, redis_url) as r:
        assert r.list() == []
    assert len(twilio.requests) == 3


def test_429_and_500_are_retried_no_sooner_than_retry_after(
    tmp_path: Path, redis_url: str, twilio: TwilioServer, daemons: list[DaemonProcess]
) -> None:
    """A 429 (Retry-After 2) and a 500 (Retry-After 1) are retried no sooner than that, then sent once."""
    cfg = sms_config(tmp_path, redis_url, twilio)
    twilio.script(
        TwilioReply.too_many(retry_after="2"),
        TwilioReply(500, 20500, "Internal Server Error", retry_after="1"),
    )
    d = start(daemons, cfg)
    with api(cfg, redis_url) as r:
        r.schedule("send_message-42-daily", when=When(in_=200), payload={"phone": ADA, "name": "Ada"})
    first, second, third = twilio.wait_for(3, timeout_s=15)
    assert [q.status for q in (first, second, third)] == [429, 500, 201]
    gap_429_s = second.arrived_mono_s - first.arrived_mono_s
    gap_500_s = third.arrived_mono_s - second.arrived_mono_s
    assert 2.0 <= gap_429_s < 3.5, gap_429_s
    assert 1.0 <= gap_500_s < 2.5, gap_500_s
    assert first.body == second.body == third.body
    failed = d.wait_for("reminder.failed", count=2)
    assert [e["attempt"] for e in failed] == [1, 2]
    assert "HTTP 429, code 20429" in failed[0]["error"]
    assert "HTTP 500, code 20500" in failed[1]["error"]
    [fired] = d.wait_for("reminder.fired")
    assert (fired["attempt"], fired["sms.message_id"]) == (3, third.sid)
    assert len(twilio.sent) == 1


def test_400_is_dead_lettered_with_the_provider_code(
    tmp_path: Path, redis_url: str, twilio: TwilioServer, daemons: list[DaemonProcess]
) -> None:
    """Twilio's 400 (code 21211) dead-letters the occurrence at once with that code; no retry."""
    cfg = sms_config(tmp_path, redis_url, twilio)
    twilio.script(TwilioReply.invalid_to())
    d = start(daemons, cfg)
    with api(cfg, redis_url) as r:
        r.schedule("send_message-42-daily", when=When(in_=100), payload={"phone": ADA, "name": "Ada"})
    d.wait_for("reminder.dead_lettered")
    [dead] = dead_letters(cfg)
    assert (dead["key"], dead["reason"], dead["attempts"]) == (
        "send_message-42-daily",
        "permanent_failure",
        1,
    )
    assert dead["error"] == (
        "sms: twilio: HTTP 400, code 21211: The 'To' number is not a valid phone number. (code 21211)"
    )
    assert dead["processors"] == ["sms"]
    assert len(twilio.requests) == 1
    with api(cfg, redis_url) as r:
        assert r.get("send_message-42-daily") is None


def test_opted_out_users_are_skipped_and_completed(
    tmp_path: Path,
    redis_url: str,
    twilio: TwilioServer,
    daemons: list[DaemonProcess],
    sync_redis: redis.Redis,
) -> None:
    """An opt-out flag in the payload or the lookup hash logs reminder.skipped, sends nothing, completes."""
    cfg = sms_config(tmp_path, redis_url, twilio)
    sync_redis.hset("user:77", mapping={"phone": BOB, "sms_opt_out": "yes"})
    d = start(daemons, cfg)
    with api(cfg, redis_url) as r:
        r.schedule("send_message-42-daily", when=When(in_=100), payload={"phone": ADA, "sms_opt_out": True})
        r.schedule("send_message-77-daily", when=When(in_=100), payload={"name": "Bob"})
    fired = by_key(d.wait_for("reminder.fired", count=2))
    assert {k: e["processors"] for k, e in fired.items()} == {
        "send_message-42-daily": {"sms": "skipped"},
        "send_message-77-daily": {"sms": "skipped"},
    }
    skipped = by_key(d.find("reminder.skipped"))
    assert {k: e["reason"] for k, e in skipped.items()} == {
        "send_message-42-daily": "opted out",
        "send_message-77-daily": "opted out",
    }
    with api(cfg, redis_url) as r:
        assert r.list() == []
    assert twilio.requests == []
    assert dead_letters(cfg) == []


def test_missing_template_field_is_dead_lettered_with_its_name(
    tmp_path: Path, redis_url: str, twilio: TwilioServer, daemons: list[DaemonProcess]
) -> None:
    """A payload lacking a field the template needs is dead-lettered naming the field; nothing is sent."""
    cfg = sms_config(tmp_path, redis_url, twilio)
    d = start(daemons, cfg)
    with api(cfg, redis_url) as r:
        r.schedule("send_message-42-daily", when=When(in_=100), payload={"phone": ADA})
    [event] = d.wait_for("reminder.dead_lettered")
    assert event["reason"] == "permanent_failure"
    [dead] = dead_letters(cfg)
    assert dead["error"] == ("sms: templates.daily: missing field payload.name (code template_field_missing)")
    assert dead["attempts"] == 1
    assert twilio.requests == []


def test_bad_or_missing_numbers_are_dead_lettered_without_retries(
    tmp_path: Path,
    redis_url: str,
    twilio: TwilioServer,
    daemons: list[DaemonProcess],
    sync_redis: redis.Redis,
) -> None:
    """A non-E.164 number (payload or lookup hash) or none at all is dead-lettered at once with the reason."""
    cfg = sms_config(tmp_path, redis_url, twilio)
    sync_redis.hset("user:77", mapping={"phone": "0049 151 12345678"})
    d = start(daemons, cfg)
    with api(cfg, redis_url) as r:
        r.schedule("send_message-42-x", when=When(in_=100), payload={"phone": "+49 151 12345678"})
        r.schedule("send_message-77-x", when=When(in_=100))
        r.schedule("send_message-5-x", when=When(in_=100))
    d.wait_for("reminder.dead_lettered", count=3)
    errors = {dead["key"]: (dead["attempts"], dead["error"]) for dead in dead_letters(cfg)}
    assert errors == {
        "send_message-42-x": (
            1,
            "sms: payload.phone is not an E.164 phone number (+49 15* ******78) (code invalid_recipient)",
        ),
        "send_message-77-x": (
            1,
            "sms: user:77 field phone is not an E.164 phone number (0049 *** ******78)"
            " (code invalid_recipient)",
        ),
        "send_message-5-x": (
            1,
            "sms: no phone number (payload.phone is missing and user:5 has no phone)"
            " (code missing_recipient)",
        ),
    }
    assert d.find("reminder.failed") == []
    assert twilio.requests == []


def quiet_window(zone: str, lead_s: float) -> tuple[str, str, int]:
    """A quiet window in ``zone`` from an hour ago to the first whole minute ``lead_s`` or more ahead.

    Returns ``start``, ``end`` (``HH:MM``) and the end as epoch ms.
    """
    tz = ZoneInfo(zone)
    now = datetime.now(tz)
    end = (now + timedelta(seconds=lead_s + 60)).replace(second=0, microsecond=0)
    start = (now - timedelta(hours=1)).replace(second=0, microsecond=0)
    return start.strftime("%H:%M"), end.strftime("%H:%M"), int(end.astimezone(UTC).timestamp() * 1000)


def test_quiet_hours_read_the_zone_from_the_lookup_hash(
    tmp_path: Path,
    redis_url: str,
    twilio: TwilioServer,
    daemons: list[DaemonProcess],
    sync_redis: redis.Redis,
) -> None:
    """A raw key's quiet window is read in the zone of its user's lookup hash, not the default zone."""
    zone = "Asia/Kolkata"
    start_hhmm, _, _ = quiet_window(zone, lead_s=0)
    end = (datetime.now(ZoneInfo(zone)) + timedelta(hours=2)).replace(second=0, microsecond=0)
    quiet = {"start": start_hhmm, "end": end.strftime("%H:%M"), "default_tz": "UTC"}
    cfg = sms_config(tmp_path, redis_url, twilio, rule={"quiet_hours": quiet})
    sync_redis.hset("user:77", mapping={"phone": BOB, "tz": zone})
    d = start(daemons, cfg)
    sync_redis.set("send_message-77-welcome", "1", px=100)
    [deferred] = d.wait_for("reminder.deferred")
    assert (deferred["key"], deferred["until_ms"]) == ("send_message-77-welcome", _ms(end))
    with api(cfg, redis_url) as r:
        rem = r.get("send_message-77-welcome")
    assert rem is not None
    assert rem.due_at_ms == _ms(end)
    assert twilio.requests == []


def _ms(moment: datetime) -> int:
    return int(moment.astimezone(UTC).timestamp() * 1000)


@pytest.mark.slow
def test_quiet_hours_defer_to_the_window_end_and_fire_once(
    tmp_path: Path,
    redis_url: str,
    twilio: TwilioServer,
    daemons: list[DaemonProcess],
    sync_redis: redis.Redis,
) -> None:
    """Due inside the user's quiet window: deferred to its end, fired once; a recurring one keeps cadence."""
    zone = "Asia/Kolkata"  # +05:30: the window is read in the user's zone, not UTC
    start_hhmm, end_hhmm, end_ms = quiet_window(zone, lead_s=10)
    quiet = {"start": start_hhmm, "end": end_hhmm, "default_tz": "UTC", "tz_field": "tz"}
    cfg = sms_config(tmp_path, redis_url, twilio, rule={"quiet_hours": quiet})
    d = start(daemons, cfg)
    payload = {"phone": ADA, "name": "Ada", "tz": zone}
    interval_ms = 100_000  # longer than the longest wait, so occurrence 2 lies after the window
    due_ms = redis_now_ms(sync_redis)  # fixed here: the record's due moves once deferred
    with api(cfg, redis_url) as r:
        r.schedule("send_message-42-daily", when=When(at=due_ms), payload=payload)
        r.schedule("send_message-42-tick", when=When(at=due_ms, every=interval_ms), payload=payload)
    deferred = by_key(d.wait_for("reminder.deferred", count=2))
    assert {k: (e["until_ms"], e["reason"]) for k, e in deferred.items()} == {
        "send_message-42-daily": (end_ms, "quiet_hours"),
        "send_message-42-tick": (end_ms, "quiet_hours"),
    }
    assert redis_now_ms(sync_redis) < end_ms
    assert twilio.requests == []
    sent = twilio.wait_for(2, timeout_s=(end_ms - redis_now_ms(sync_redis)) / 1000 + 5)
    assert all(req.arrived_at_s * 1000 >= end_ms for req in sent)
    fired = by_key(d.wait_for("reminder.fired", count=2))
    assert {k: (e["occurrence"], e["due_ms"]) for k, e in fired.items()} == {
        "send_message-42-daily": (1, end_ms),
        "send_message-42-tick": (1, end_ms),
    }
    with api(cfg, redis_url) as r:
        assert r.get("send_message-42-daily") is None
        tick = r.get("send_message-42-tick")
    assert tick is not None
    assert (tick.occurrence, tick.due_at_ms) == (2, due_ms + interval_ms)
    assert Counter(req.body for req in twilio.requests) == {
        f"Hi Ada, your check-in is at {local(due_ms, zone, '%Y-%m-%d %H:%M:%S')} ({zone})": 1,
        "Reminder tick for user 42": 1,
    }


@pytest.mark.slow
def test_two_daemons_share_one_rate_limit(
    tmp_path: Path,
    redis_url: str,
    twilio: TwilioServer,
    daemons: list[DaemonProcess],
    sync_redis: redis.Redis,
) -> None:
    """Two daemons sending 101 reminders due at once through one account keep 20/s, none lost or doubled."""
    rate_per_s, count = 20, 101
    sms = sms_processor(twilio, rate_limit={"per_second": rate_per_s, "burst": 1})
    cfg = sms_config(tmp_path, redis_url, twilio, processors={"sms": sms}, daemon={"concurrency": 64})
    one, two = start(daemons, cfg, "one"), start(daemons, cfg, "two")
    due_ms = redis_now_ms(sync_redis) + 1000
    with api(cfg, redis_url) as r:
        r.schedule_many((f"send_message-{i}-burst", {"phone": ADA}, When(at=due_ms)) for i in range(count))
    sent = sorted(twilio.wait_for(count, timeout_s=20), key=lambda q: q.arrived_mono_s)
    assert Counter(req.body for req in sent) == {f"Reminder burst for user {i}": 1 for i in range(count)}
    assert all(req.status == 201 for req in sent)
    span_s = sent[-1].arrived_mono_s - sent[0].arrived_mono_s
    measured = (count - 1) / span_s
    print(f"rate: {count} messages in {span_s:.3f} s = {measured:.2f}/s (limit {rate_per_s}/s)")
    assert abs(measured - rate_per_s) <= 0.1 * rate_per_s, measured
    # Tokens are spaced on Redis's clock; a sender's wake-up can be late by tens of ms, so
    # any one-second window at the server may hold burst + rate x (1 s + 150 ms of jitter).
    busiest = _busiest_window(sent, 1.0)
    print(f"busiest 1 s window: {busiest} messages")
    assert busiest <= 1 + rate_per_s * 1.15, busiest
    wait_until(lambda: len(one.find("sms.sent")) + len(two.find("sms.sent")) == count, 10, "sms.sent x101")
    assert one.find("sms.sent"), "daemon one sent none"
    assert two.find("sms.sent"), "daemon two sent none"
    deferred = one.find("reminder.deferred") + two.find("reminder.deferred")
    assert deferred, "a queue longer than max_wait must be deferred"
    assert {e["reason"] for e in deferred} == {"rate_limit"}
    assert one.find("reminder.failed") + two.find("reminder.failed") == []
    with api(cfg, redis_url) as r:
        assert r.list() == []
    assert dead_letters(cfg) == []


def _busiest_window(sent: list[SmsRequest], window_s: float) -> int:
    """The most requests that arrived within any ``window_s`` (``sent`` sorted by arrival)."""
    busiest, first = 0, 0
    for last, req in enumerate(sent):
        while req.arrived_mono_s - sent[first].arrived_mono_s >= window_s:
            first += 1
        busiest = max(busiest, last - first + 1)
    return busiest


def docs_example() -> dict[str, Any]:
    """The first YAML block of ``docs/sms.md``: the documented SMS rule."""
    text = (Path(__file__).parent.parent / "docs" / "sms.md").read_text()
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    loaded: dict[str, Any] = yaml.safe_load(block)
    return loaded


def daytime_zone(hour: int = 14) -> str:
    """A fixed-offset zone whose clock reads ``hour`` o'clock now, far from any quiet window edge."""
    offset = hour - datetime.now(UTC).hour  # between -9 and +14: all exist as Etc/GMT zones
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


def test_the_documented_example_config_sends_the_documented_messages(
    tmp_path: Path,
    redis_url: str,
    twilio: TwilioServer,
    daemons: list[DaemonProcess],
    sync_redis: redis.Redis,
) -> None:
    """The config in docs/sms.md, pointed at the loopback server, sends its templates as the docs say."""
    example = docs_example()
    example["processors"]["sms"]["twilio"]["base_url"] = twilio.base_url
    assert example["processors"]["sms"]["twilio"]["account_sid"] == twilio.account_sid
    assert example["processors"]["sms"]["twilio"]["auth_token"] == "${TWILIO_AUTH_TOKEN}"
    cfg = write_config(tmp_path / "cfg.yaml", redis_url, **example)
    zone = daytime_zone()
    sync_redis.hset("user:43", mapping={"phone": BOB, "tz": zone})
    d = start(daemons, cfg)
    due_ms = redis_now_ms(sync_redis) + 100
    with api(cfg, redis_url) as r:
        payload = {"phone": ADA, "name": "Ada", "tz": zone}
        r.schedule("send_message-42-daily", when=When(at=due_ms), payload=payload)
    sync_redis.set("send_message-43-welcome", "1", px=100)
    sent = {req.to: req.body for req in twilio.wait_for(2, timeout_s=10)}
    assert sent == {
        ADA: f"Hi Ada, your daily check-in is at {local(due_ms, zone, '%H:%M')}.",
        BOB: "Welcome! Reply STOP to opt out.",
    }
    d.wait_for("reminder.fired", count=2)
    assert d.find("reminder.deferred") == []


def test_no_number_or_token_in_debug_logs(
    tmp_path: Path,
    redis_url: str,
    twilio: TwilioServer,
    daemons: list[DaemonProcess],
    sync_redis: redis.Redis,
) -> None:
    """At debug level, over sends, retries, provider errors and bad numbers, no number or token is logged."""
    cfg = sms_config(tmp_path, redis_url, twilio, logging={"format": "json", "level": "debug"})
    sync_redis.hset("user:77", mapping={"phone": BOB})
    twilio.script(TwilioReply.server_error(), TwilioReply.invalid_to())
    d = start(daemons, cfg)
    with api(cfg, redis_url) as r:
        r.schedule("send_message-42-daily", when=When(in_=100), payload={"phone": ADA, "name": "Ada"})
        r.schedule("send_message-77-welcome", when=When(in_=100))
        r.schedule("send_message-9-x", when=When(in_=100), payload={"phone": CARL.replace("+", "00")})
    d.wait_for("reminder.dead_lettered", count=2)
    d.wait_for("reminder.fired")
    assert d.find("reminder.failed")
    assert d.find("sms.body")
    assert_logs_hold_no_secrets(daemons)
