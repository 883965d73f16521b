"""Processors that fail: transiently, permanently, by hanging, by raising; and a poison payload."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from reminderd.api import When
from tests.daemon_proc import wait_until
from tests.faults import Tally, api, redis_now_ms, webhook_config
from tests.faults.conftest import Daemons
from tests.http_receiver import HttpReceiver, Reply

KEY = "send_message-7-fail"
OTHERS = [f"send_message-{i}-fine" for i in range(5)]


def cli(cfg: Path, *args: str) -> Any:
    """Run ``reminderd <args> --config cfg --json`` and return its parsed output."""
    done = subprocess.run(
        [sys.executable, "-m", "reminderd", *args, "--config", str(cfg), "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return json.loads(done.stdout)


def gone(redis_url: str, key: str) -> bool:
    """True once the reminder's record is deleted (its occurrence finished or was dead-lettered)."""
    with redis.Redis.from_url(redis_url) as client:
        return not client.exists(f"reminderd:r:{key}")


@pytest.mark.slow
def test_transient_failure_is_retried_with_the_same_key(
    tmp_path: Path, redis_url: str, receiver: HttpReceiver, daemons: Daemons
) -> None:
    """/a answers 500 then 200: /a runs twice with one idempotency key, /b (already done) only once."""
    cfg = webhook_config(tmp_path / "cfg.yaml", redis_url, receiver)
    receiver.script([500], path="/a")
    d = daemons.start(cfg)
    with api(cfg, redis_url) as r:
        r.schedule(KEY, when=When(in_=100))
    tally = Tally(receiver)
    wait_until(lambda: tally.update().calls[("/a", KEY)] == 2, 10, "the retry of /a")
    wait_until(lambda: gone(redis_url, KEY), 10, "the occurrence completed")
    assert dict(tally.update().calls) == {("/a", KEY): 2, ("/b", KEY): 1}
    assert len(tally.idempotency[KEY]) == 1
    failed = d.wait_for("reminder.failed")[0]
    assert (failed["attempt"], failed["done"]) == (1, ["b"])
    assert "HTTP 500" in failed["error"]
    assert d.wait_for("reminder.fired")[0]["attempt"] == 2


@pytest.mark.slow
def test_permanent_failure_is_dead_lettered_and_replay_runs_only_the_failed_processor(
    tmp_path: Path, redis_url: str, receiver: HttpReceiver, daemons: Daemons
) -> None:
    """/b answers 400: dead letter listed by the CLI; ``dead replay --all`` runs /b again, never /a."""
    cfg = webhook_config(tmp_path / "cfg.yaml", redis_url, receiver)
    receiver.script([400], path="/b")
    d = daemons.start(cfg)
    with api(cfg, redis_url) as r:
        r.schedule(KEY, when=When(in_=100))
    d.wait_for("reminder.dead_lettered")
    [dead] = cli(cfg, "dead", "list")
    assert (dead["key"], dead["reason"], dead["processors"], dead["attempts"]) == (
        KEY,
        "permanent_failure",
        ["b"],
        1,
    )
    assert "HTTP 400" in dead["error"]
    [replayed] = cli(cfg, "dead", "replay", "--all")
    assert replayed["key"] == KEY
    tally = Tally(receiver)
    wait_until(lambda: tally.update().calls[("/b", KEY)] == 2, 10, "the replay of /b")
    wait_until(lambda: gone(redis_url, KEY), 10, "the replay completed")
    assert dict(tally.update().calls) == {("/a", KEY): 1, ("/b", KEY): 2}
    assert len(tally.idempotency[KEY]) == 1
    assert cli(cfg, "dead", "list") == []


@pytest.mark.slow
def test_hanging_processor_times_out_is_retried_then_dead_lettered(
    tmp_path: Path, redis_url: str, receiver: HttpReceiver, daemons: Daemons
) -> None:
    """/b never answers (timeout 1 s): retried, dead-lettered after 2 attempts; others keep firing."""
    cfg = webhook_config(
        tmp_path / "cfg.yaml",
        redis_url,
        receiver,
        processor_options={"b": {"timeout": "1s"}},
        retry={"max_attempts": 2, "backoff": "200ms", "backoff_max": "1s"},
    )
    receiver.script([Reply(hang=True), Reply(hang=True)], path="/b")
    d = daemons.start(cfg)
    with api(cfg, redis_url) as r:
        r.schedule(KEY, when=When(in_=100))
        dead = d.wait_for("reminder.dead_lettered", timeout_s=15)[0]
        r.schedule_many((k, None, When(in_=100)) for k in OTHERS)
    assert (dead["reason"], dead["attempts"], dead["pending"]) == ("attempts_exhausted", 2, ["b"])
    assert "timed out" in dead["error"]
    tally = Tally(receiver).wait_covered(OTHERS, ("/a", "/b"), 10)
    assert tally.calls[("/a", KEY)] == 1
    assert tally.calls[("/b", KEY)] == 2
    for k in OTHERS:
        assert (tally.calls[("/a", k)], tally.calls[("/b", k)]) == (1, 1)


@pytest.mark.slow
def test_raising_plugin_is_retried_then_dead_lettered(
    tmp_path: Path, redis_url: str, receiver: HttpReceiver, daemons: Daemons
) -> None:
    """A plugin raising RuntimeError counts as retryable: dead letter after max attempts, /a ran once."""
    cfg = webhook_config(
        tmp_path / "cfg.yaml",
        redis_url,
        receiver,
        processors=("a",),
        extra_processors={"boom": {"type": "plugin", "path": "tests.faults.plugins:Raising"}},
        rules={"send_message": {"processors": ["a", "boom"]}},
        retry={"max_attempts": 3, "backoff": "100ms", "backoff_max": "200ms"},
    )
    d = daemons.start(cfg)
    with api(cfg, redis_url) as r:
        r.schedule(KEY, when=When(in_=100), payload={"explode": True})
        r.schedule_many((k, None, When(in_=100)) for k in OTHERS)
    dead = d.wait_for("reminder.dead_lettered", timeout_s=15)[0]
    assert (dead["key"], dead["reason"], dead["attempts"], dead["pending"]) == (
        KEY,
        "attempts_exhausted",
        3,
        ["boom"],
    )
    assert dead["error"] == "boom: RuntimeError: boom on attempt 3"
    tally = Tally(receiver).wait_covered(OTHERS, ("/a",), 10)
    assert tally.calls[("/a", KEY)] == 1
    wait_until(lambda: len(d.find("reminder.fired")) == len(OTHERS), 10, "the other reminders fired")


@pytest.mark.slow
def test_poison_payload_is_dead_lettered_and_others_keep_firing(
    tmp_path: Path, redis_url: str, receiver: HttpReceiver, daemons: Daemons
) -> None:
    """A record whose payload is not JSON is dead-lettered as poison_payload; the other reminders fire."""
    cfg = webhook_config(tmp_path / "cfg.yaml", redis_url, receiver)
    d = daemons.start(cfg)
    client = redis.Redis.from_url(redis_url)
    due = redis_now_ms(client) + 200
    client.hset(f"reminderd:r:{KEY}", mapping={"d": due, "o": 1, "p": '{"name": "Ada",'})
    client.zadd("reminderd:due", {KEY: due})
    with api(cfg, redis_url) as r:
        r.schedule_many((k, None, When(in_=200)) for k in OTHERS)
    dead = d.wait_for("reminder.dead_lettered", timeout_s=10)[0]
    assert (dead["key"], dead["reason"]) == (KEY, "poison_payload")
    assert dead["error"].startswith("payload is not valid JSON")
    Tally(receiver).wait_covered(OTHERS, ("/a", "/b"), 10).assert_exactly_once(OTHERS, ("/a", "/b"))
    [letter] = cli(cfg, "dead", "list")
    assert (letter["key"], letter["reason"]) == (KEY, "poison_payload")
    assert not client.exists(f"reminderd:r:{KEY}")
    client.close()
