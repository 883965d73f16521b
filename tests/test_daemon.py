"""The daemon as a real subprocess against a private redis-server: the acceptance rows."""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from reminderd.api import Reminders, When
from reminderd.config import load_config
from reminderd.storage.names import Names
from tests.daemon_proc import DaemonProcess, wait_until, write_config
from tests.http_receiver import HttpReceiver, Reply
from tests.redis_server import RedisServer, free_port


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    """A loopback HTTP server standing in for a webhook target."""
    with HttpReceiver() as rec:
        yield rec


def webhook_config(tmp_path: Path, url: str, receiver: HttpReceiver, **extra: object) -> Path:
    """Config with two webhook processors (a and b) on the default rule."""
    return write_config(
        tmp_path / "cfg.yaml",
        url,
        processors={
            "a": {"type": "webhook", "url": receiver.url("/a"), "timeout": "10s"},
            "b": {"type": "webhook", "url": receiver.url("/b"), "timeout": "10s"},
        },
        rules={"send_message": {"processors": ["a", "b"]}},
        retry={"max_attempts": 3, "backoff": "200ms", "backoff_max": "1s"},
        **{"daemon": {"concurrency": 64}, **extra},
    )


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    """Daemon processes started by the test, killed at the end."""
    started: list[DaemonProcess] = []
    yield started
    for d in started:
        d.close()


def api(cfg: Path, url: str) -> Reminders:
    """The sync API on the test's Redis."""
    return Reminders(url, load_config(cfg))


def keys_at(receiver: HttpReceiver, path: str) -> list[str]:
    """Idempotency keys received on ``path``."""
    return [r.headers["idempotency-key"] for r in receiver.requests_for(path)]


def test_one_shot_fires_once_on_time(
    tmp_path: Path, redis_url: str, receiver: HttpReceiver, daemons: list
) -> None:
    """A reminder scheduled 1 s ahead fires exactly once per processor, within 100 ms of its due time."""
    cfg = webhook_config(tmp_path, redis_url, receiver)
    daemons.append(DaemonProcess(cfg).start())
    with api(cfg, redis_url) as r:
        rem = r.schedule("send_message-42-welcome", when=When(in_=1000), payload={"name": "Ada"})
    assert rem is not None
    receiver.wait_for(lambda reqs: len(reqs) >= 2, timeout_s=5)
    fired = daemons[0].wait_for("reminder.fired")[0]
    assert fired["lateness_ms"] < 100
    assert abs(receiver.requests[0].received_at_s * 1000 - rem.due_at_ms) < 150
    body = receiver.requests_for("/a")[0].json()
    assert (body["payload"], body["user_id"], body["type"]) == ({"name": "Ada"}, "42", "welcome")
    wait_until(lambda: daemons[0].find("heartbeat") == [] and len(receiver.requests) == 2, 1.5)
    assert (
        keys_at(receiver, "/a") == keys_at(receiver, "/b") == [f"send_message-42-welcome:1:{rem.due_at_ms}"]
    )


def test_every_fires_repeatedly_without_drift(
    tmp_path: Path, redis_url: str, receiver: HttpReceiver, daemons: list
) -> None:
    """An 'every 300ms' reminder fires occurrences 1..5 at anchor + k*interval, never from fire time."""
    cfg = webhook_config(tmp_path, redis_url, receiver, limits={"min_interval": "100ms"})
    daemons.append(DaemonProcess(cfg).start())
    with api(cfg, redis_url) as r:
        rem = r.schedule("send_message-7-tick", when=When(in_=300, every=300))
    assert rem is not None
    receiver.wait_for(lambda reqs: len([q for q in reqs if q.path == "/a"]) >= 5, timeout_s=10)
    dues = [q.json()["due_at_ms"] for q in receiver.requests_for("/a")[:5]]
    assert dues == [rem.due_at_ms + k * 300 for k in range(5)]
    assert [q.json()["occurrence"] for q in receiver.requests_for("/a")[:5]] == [1, 2, 3, 4, 5]


def test_raw_set_key_fires(
    tmp_path: Path, redis_server: RedisServer, redis_url: str, receiver: HttpReceiver, daemons: list
) -> None:
    """A key written with a plain SET ... PX (no API) fires once, with user and type from its name."""
    cfg = webhook_config(tmp_path, redis_url, receiver)
    daemons.append(DaemonProcess(cfg).start())
    redis_server.client().set("send_message-u-1-2-raw", "1", px=300)
    receiver.wait_for(lambda reqs: len(reqs) >= 2, timeout_s=5)
    body = receiver.requests_for("/a")[0].json()
    assert (body["user_id"], body["type"], body["payload"]) == ("u-1-2", "raw", {})
    daemons[0].wait_for("reminder.fired")
    assert daemons[0].stop() == 0
    assert len(receiver.requests) == 2


def _redis_now_ms(client: redis.Redis) -> int:
    sec, usec = client.time()
    return int(sec) * 1000 + int(usec) // 1000


def test_recovery_after_downtime(
    tmp_path: Path, redis_server: RedisServer, redis_url: str, receiver: HttpReceiver, daemons: list
) -> None:
    """200 reminders that came due while no daemon ran fire exactly once after start; the summary says so."""
    cfg = webhook_config(tmp_path, redis_url, receiver)
    with api(cfg, redis_url) as r:
        r.schedule_many((f"send_message-{i}-down", None, When(in_=50)) for i in range(200))
        last_due = max(rem.due_at_ms for rem in r.list(limit=500))
    client = redis_server.client()
    wait_until(lambda: _redis_now_ms(client) > last_due + 20, message="all 200 due")
    d = DaemonProcess(cfg)
    daemons.append(d)
    d.start()
    started = d.wait_for("daemon.started")[0]
    assert started["recovered"] == 200
    receiver.wait_for(lambda reqs: len(reqs) >= 400, timeout_s=15)
    counts = receiver.count_by_idempotency_key()
    assert len(counts) == 200
    assert set(counts.values()) == {2}


def test_recovery_says_its_total_up_front_and_its_progress(
    tmp_path: Path, redis_server: RedisServer, redis_url: str, daemons: list
) -> None:
    """A start-up recovery of 400 overdue reminders logs its total before the first fire, then progress."""
    with HttpReceiver(default=Reply(200, delay_s=0.1)) as slow:
        cfg = webhook_config(tmp_path, redis_url, slow, daemon={"concurrency": 20})
        with api(cfg, redis_url) as r:
            r.schedule_many((f"send_message-{i}-late", None, When(in_=50)) for i in range(400))
            last_due = max(rem.due_at_ms for rem in r.list(limit=500))
        client = redis_server.client()
        wait_until(lambda: _redis_now_ms(client) > last_due + 20, message="all 400 due")
        d = DaemonProcess(cfg)
        daemons.append(d)
        d.start(timeout_s=60)
        events = [e["event"] for e in d.read()]
        assert events.index("recovery.started") < events.index("reminder.fired")
        assert d.find("recovery.started")[0]["total"] == 400
        progress = d.find("recovery.progress")
        assert progress, "no progress line during a recovery of several seconds"
        assert {"done", "total", "rate_per_s", "eta_s"} <= set(progress[0])
        assert progress[0]["total"] == 400


def test_sigterm_drains_in_flight_work(
    tmp_path: Path, redis_url: str, receiver: HttpReceiver, daemons: list
) -> None:
    """SIGTERM while a processor call is in flight lets it finish, completes it, and exits 0."""
    cfg = webhook_config(tmp_path, redis_url, receiver)
    receiver.script([Reply(200, delay_s=1.0)], path="/a")
    d = DaemonProcess(cfg).start()
    daemons.append(d)
    with api(cfg, redis_url) as r:
        r.schedule("send_message-5-slow", when=When(in_=100))
        receiver.wait_for(lambda reqs: len(reqs) >= 1, timeout_s=5)
        d.signal(signal.SIGTERM)
        assert d.wait_exit(20) == 0
        assert r.get("send_message-5-slow") is None
    assert d.find("reminder.fired")
    assert len(receiver.requests_for("/a")) == 1


def _heartbeat_ms(client: redis.Redis, instance: str) -> int | None:
    """``beat_ms`` of the instance's heartbeat in Redis, None while it has none."""
    raw = client.get(Names("reminderd").heartbeat(instance))
    return None if raw is None else int(json.loads(raw)["beat_ms"])


def test_sighup_changes_heartbeat_and_adoption_intervals(
    tmp_path: Path, redis_server: RedisServer, redis_url: str, daemons: list
) -> None:
    """A reload that shortens heartbeat_interval and adoption_interval from one hour takes effect at once."""
    slow = {"heartbeat_interval": "1h", "adoption_interval": "1h"}
    redis_cfg = {"url": redis_url, "manage_notifications": False}  # no expire events: only the scan adopts
    cfg = write_config(tmp_path / "cfg.yaml", redis_url, redis=redis_cfg, daemon=slow)
    d = DaemonProcess(cfg).start()
    daemons.append(d)
    instance = d.find("daemon.started")[0]["instance"]
    client = redis_server.client()
    wait_until(lambda: _heartbeat_ms(client, instance) is not None, message="first heartbeat")
    first_beat_ms = _heartbeat_ms(client, instance)
    client.set("send_message-42-raw", "1", ex=3600)
    write_config(tmp_path / "cfg.yaml", redis_url, redis=redis_cfg,
                 daemon={"heartbeat_interval": "200ms", "adoption_interval": "200ms"})  # fmt: skip
    d.signal(signal.SIGHUP)
    d.wait_for("config.reloaded")
    assert d.wait_for("reminder.adopted", timeout_s=5)[0]["count"] == 1
    wait_until(lambda: (_heartbeat_ms(client, instance) or 0) > (first_beat_ms or 0), 5, "a second heartbeat")
    assert d.stop() == 0


def _readyz(port: int) -> tuple[int, str | None]:
    """The status of ``/readyz`` and its reason (None when ready); (0, None) when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            return int(resp.status), None
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read())["reason"]
    except OSError:
        return 0, None


def test_readiness_follows_redis_reachability(
    tmp_path: Path, fresh_redis: RedisServer, daemons: list
) -> None:
    """/readyz turns 503 "redis unreachable" while Redis is down, and 200 again once it is back."""
    port = free_port()
    cfg = write_config(tmp_path / "cfg.yaml", fresh_redis.url, metrics={"enabled": True, "port": port},
                       daemon={"heartbeat_interval": "200ms"})  # fmt: skip
    daemons.append(DaemonProcess(cfg).start())
    wait_until(lambda: _readyz(port) == (200, None), message="ready")
    fresh_redis.stop()
    wait_until(lambda: _readyz(port) == (503, "redis unreachable"), 10, "not ready while Redis is down")
    fresh_redis.start()
    wait_until(lambda: _readyz(port) == (200, None), 15, "ready again once Redis is back")


def test_stop_after_reload_closes_old_and_new_processors_once(
    tmp_path: Path, redis_server: RedisServer, redis_url: str, daemons: list
) -> None:
    """After a reload, SIGTERM closes the replaced processors (without waiting out their grace) and
    the ones in force, each once."""

    def recorder(tag: str) -> dict[str, object]:
        path = "tests.plugin_example:CloseRecorder"
        return {"rec": {"type": "plugin", "path": path, "options": {"tag": tag}}}

    rules = {"send_message": {"processors": ["rec"]}}
    cfg = write_config(tmp_path / "cfg.yaml", redis_url, processors=recorder("v1"), rules=rules,
                       daemon={"processor_timeout": "1h"})  # fmt: skip
    d = DaemonProcess(cfg).start()
    daemons.append(d)
    write_config(tmp_path / "cfg.yaml", redis_url, processors=recorder("v2"), rules=rules,
                 daemon={"processor_timeout": "1h"})  # fmt: skip
    d.signal(signal.SIGHUP)
    d.wait_for("config.reloaded")
    assert d.stop(timeout_s=20) == 0
    assert sorted(redis_server.client().lrange("closed", 0, -1)) == [b"v1", b"v2"]


def test_a_fire_with_the_log_processor_is_one_log_line(
    tmp_path: Path, redis_server: RedisServer, daemons: list[DaemonProcess]
) -> None:
    """A reminder whose rule runs the ``log`` processor leaves exactly one line with its key."""
    redis_server.client().flushall()
    cfg = write_config(
        tmp_path / "cfg.yaml",
        redis_server.url,
        processors={"audit": {"type": "log"}},
        rules={"send_message": {"processors": ["audit"]}},
    )
    daemon = DaemonProcess(cfg).start()
    daemons.append(daemon)
    with api(cfg, redis_server.url) as r:
        r.schedule("send_message-42-once", payload={"n": 1}, when=When(in_=0))
    fired = daemon.wait_for("reminder.fired", lambda e: e.get("key") == "send_message-42-once")
    assert fired[0]["processors"] == {"audit": "ok"}
    assert daemon.stop() == 0
    lines = [e for e in daemon.read() if "send_message-42-once" in json.dumps(e)]
    assert [e["event"] for e in lines] == ["reminder.fired"]
