"""A Redis that cannot serve reminders normally: a replica, and a user without CONFIG."""

from __future__ import annotations

from pathlib import Path

import pytest

from reminderd.api import When
from tests.daemon_proc import wait_until
from tests.faults import Tally, api, webhook_config
from tests.faults.conftest import Daemons, Servers
from tests.http_receiver import HttpReceiver


@pytest.mark.slow
def test_daemon_pointed_at_a_replica_says_so_and_keeps_running(
    tmp_path: Path, servers: Servers, receiver: HttpReceiver, daemons: Daemons
) -> None:
    """Connected to a replica with due reminders, the daemon reports it (redis.doctor) and does not exit."""
    primary = servers.start()
    replica = servers.start("--replicaof", "127.0.0.1", str(primary.port))
    wait_until(
        lambda: replica.client().info("replication").get("master_link_status") == "up", 10, "replication up"
    )
    cfg = webhook_config(tmp_path / "cfg.yaml", replica.url, receiver)
    with api(cfg, primary.url) as r:  # due reminders on the primary reach the replica's index
        r.schedule_many((f"send_message-{i}-replica", None, When(in_=50)) for i in range(5))
    wait_until(lambda: replica.client().zcard("reminderd:due") == 5, 10, "the index replicated")
    d = daemons.start(cfg, wait_ready=False)
    finding = d.wait_for("redis.doctor", lambda e: "replica" in e["finding"], timeout_s=20)[0]
    assert finding["level"] == "warning"
    assert "read only replica" in d.wait_for("reconcile.failed")[0]["error"]
    # Alive through three failed sweeps in a row: a crash (and a restart loop) would show here.
    d.wait_for("redis.sweep_failed", count=3, timeout_s=20)
    assert d.proc is not None
    assert d.proc.poll() is None, d.tail()
    assert receiver.requests == []


@pytest.mark.slow
def test_notification_flags_not_settable_delivery_by_sweep(
    tmp_path: Path, servers: Servers, receiver: HttpReceiver, daemons: Daemons
) -> None:
    """As an ACL user without CONFIG, with the flags unset: a loud warning, and reminders still fire."""
    server = servers.start(notify=None)
    admin = server.client()
    admin.acl_setuser(
        "app", enabled=True, passwords=["+pw"], keys=["*"], channels=["*"], commands=["+@all", "-config"]
    )
    app_user = {"url": server.url, "username": "app", "password": "pw"}
    cfg = webhook_config(tmp_path / "cfg.yaml", server.url, receiver, redis=app_user)
    d = daemons.start(cfg)
    warning = d.wait_for("redis.notifications_unavailable")[0]
    assert "notify-keyspace-events" in warning["problem"]
    assert admin.config_get("notify-keyspace-events")["notify-keyspace-events"] == ""
    keys = [f"send_message-{i}-nocfg" for i in range(10)]
    with api(cfg, server.url) as r:
        r.schedule_many((k, None, When(in_=300 + i * 50)) for i, k in enumerate(keys))
    Tally(receiver).wait_covered(keys, ("/a", "/b"), 10).assert_exactly_once(keys, ("/a", "/b"))
    admin.close()
