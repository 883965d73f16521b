"""``reminderd status``: exit codes as a monitoring check, heartbeats, Redis settings, formatting."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from reminderd.api.status import format_instant, format_relative, format_span
from reminderd.storage.names import Names
from reminderd.storage.presence import Identity, beat
from tests import test_cli
from tests.redis_server import RedisServer
from tests.test_cli import Cli

NAMES = Names("reminderd")
config_file = test_cli.config_file
rds = test_cli.rds
cli = test_cli.cli  # the same CLI runner fixture


def write_heartbeat(url: str, instance: str = "host-1-abc", interval_ms: int = 1000) -> None:
    """Write one heartbeat the way a running daemon does."""

    async def go() -> None:
        client = aioredis.Redis.from_url(url, decode_responses=True)
        try:
            me = Identity(instance, host="testhost", pid=4242, started_ms=int(time.time() * 1000) - 65_000)
            extra = {"last_sweep_ms": int(time.time() * 1000), "fired": 7, "in_flight": 1, "canary": "ok"}
            await beat(client, NAMES, me, interval_ms, extra)
        finally:
            await client.aclose()

    asyncio.run(go())


def test_healthy_with_live_daemon_exits_0(cli: Cli) -> None:
    """With a fresh heartbeat and nothing overdue, status exits 0 and shows the daemon's details."""
    write_heartbeat(cli.url)
    cli("schedule", "send_message-1-x", "--in", "1h")
    res = cli("status")
    assert res.code == 0, res.out
    lines = res.out.splitlines()
    assert "daemons:          1 alive" in lines
    daemon = next(line for line in lines if line.startswith("  host-1-abc:"))
    assert "testhost pid 4242, v0.1.0, up 1m5s" in daemon
    assert "as of its heartbeat 0s ago: last sweep 0s before, fired 7, in flight 1" in daemon
    assert "scheduled:        1" in lines
    assert "due now:          0" in lines
    assert any(line.startswith("next due:         send_message-1-x at ") for line in lines)
    assert not any("no live daemon" in line for line in lines)


def test_json_report(cli: Cli) -> None:
    """status --json carries the counts, the daemons and the exit code."""
    write_heartbeat(cli.url)
    with redis.Redis.from_url(cli.url) as client:
        client.config_set("notify-keyspace-events", "ExKg")  # as a daemon with raw-key events leaves them
    data = cli("status", "--json").json()
    assert isinstance(data, dict)
    assert data["exit_code"] == 0
    assert data["scheduled"] == 0
    assert data["dead_letters"] == 0
    assert data["daemons"][0]["host"] == "testhost"
    assert data["daemons"][0]["pid"] == 4242
    assert data["notifications_ok"] is True
    assert data["role"] == "master"


def test_no_daemon_exits_4(cli: Cli) -> None:
    """Without a heartbeat status exits 4 and warns that nothing fires."""
    res = cli("status")
    assert res.code == 4
    assert "daemons:          0 alive" in res.out.splitlines()
    assert "warning: no live daemon: nothing fires until one runs (reminderd run)" in res.out.splitlines()


def test_stale_heartbeat_counts_as_gone(cli: Cli, rds: redis.Redis) -> None:
    """A daemon whose last beat is older than three intervals is not alive: exit 4."""
    rds.zadd(NAMES.daemons, {"old-1": int(time.time() * 1000) - 3_500})
    assert cli("status").code == 4


def test_stale_backlog_exits_5(cli: Cli) -> None:
    """With a daemon alive but a reminder overdue beyond backlog_alert (5s), status exits 5."""
    write_heartbeat(cli.url)
    at = f"@{time.time() - 12:.3f}"
    cli("schedule", "send_message-1-late", "--at", at)
    res = cli("status")
    assert res.code == 5
    lines = res.out.splitlines()
    assert "due now:          1" in lines
    warning = next(line for line in lines if line.startswith("warning: oldest due"))
    assert warning.startswith("warning: oldest due reminder is 12s late") or "is 13s late" in warning
    assert warning.endswith("(alert above 5s): daemons are not keeping up")


def test_recent_backlog_is_healthy(cli: Cli) -> None:
    """An overdue reminder younger than backlog_alert does not fail the check."""
    write_heartbeat(cli.url)
    cli("schedule", "send_message-1-now", "--at", "now")
    assert cli("status").code == 0


def test_no_daemon_wins_over_backlog(cli: Cli) -> None:
    """With no daemon and an old backlog, exit 4 (the likely cause) and both warnings."""
    cli("schedule", "send_message-1-late", "--at", f"@{time.time() - 60:.3f}")
    res = cli("status")
    assert res.code == 4
    assert sum(line.startswith("warning: ") for line in res.out.splitlines()) >= 2


def test_dead_letter_count_and_stats(cli: Cli, rds: redis.Redis) -> None:
    """The dead-letter stream length and the shared fired counter are reported."""
    write_heartbeat(cli.url)
    rds.xadd(NAMES.dead, {"key": "send_message-1-x", "occurrence": "1"})
    rds.hset(NAMES.stats, mapping={"fired": 12, "dead": 1})
    lines = cli("status").out.splitlines()
    assert "dead letters:     1" in lines
    assert "fired total:      12" in lines


def test_redis_settings_that_lose_reminders_are_warned(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, config_file: Path
) -> None:
    """Missing expired-event flags, no persistence and an evicting policy each give a warning line."""
    server = RedisServer(notify="").start()
    try:
        client = server.client()
        client.config_set("maxmemory-policy", "allkeys-lru")
        monkeypatch.setenv("REMINDERD_CONFIG", str(config_file))
        monkeypatch.setenv("REMINDERD_REDIS_URL", server.url)
        cli = Cli(capsys, config_file, server.url)
        write_heartbeat(server.url)
        res = cli("status")
        assert res.code == 0  # warnings inform; they do not fail the monitoring check
        lines = res.out.splitlines()
        assert "notifications:    (empty) (expired events OFF)" in lines
        assert "persistence:      none" in lines
        assert "maxmemory-policy: allkeys-lru" in lines
        assert (
            "warning: notify-keyspace-events is '': expired events need E and x, raw-key events K and g; "
            "raw SET keys wait for the adoption scan and delivery relies on the sweep"
        ) in lines
        assert "warning: no persistence (no AOF, no RDB): a Redis restart loses every reminder" in lines
        assert "warning: maxmemory-policy is allkeys-lru: Redis may evict reminders; use noeviction" in lines
        client.config_set("notify-keyspace-events", "KEA")
        client.config_set("appendonly", "yes")
        data = json.loads(cli("status", "--json").out)
        assert data["notifications_ok"] is True  # 'A' includes x and g
        assert data["persistence"].startswith("aof (appendfsync ")
        client.close()
    finally:
        server.close()


def test_formatting_helpers() -> None:
    """Times render as UTC ISO with Z, spans in two units, relative times as in/ago/now."""
    assert format_instant(1_795_453_200_000) == "2026-11-23T17:00:00Z"
    assert format_instant(1_795_453_200_250) == "2026-11-23T17:00:00.250Z"
    assert format_span(250) == "250ms"
    assert format_span(9_400) == "9s"
    assert format_span(200_000) == "3m20s"
    assert format_span(3 * 86_400_000 + 4 * 3_600_000 + 5_000) == "3d4h"
    assert format_relative(10_000, 1_000) == "in 9s"
    assert format_relative(0, 180_000) == "3m ago"
    assert format_relative(500, 0) == "now"
