"""Redis out of reach: the storage link cut by a proxy, and Redis restarted with each persistence mode."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reminderd.api import When
from tests.daemon_proc import wait_until
from tests.faults import Tally, api, redis_now_ms, webhook_config
from tests.faults.conftest import Daemons, Servers
from tests.faults.tcp_proxy import TcpProxy
from tests.http_receiver import HttpReceiver


@pytest.mark.slow
@pytest.mark.parametrize("drop", [True, False], ids=["connections-dropped", "traffic-held"])
def test_storage_link_cut_longer_than_the_delay(
    tmp_path: Path, servers: Servers, receiver: HttpReceiver, daemons: Daemons, drop: bool
) -> None:
    """Reminders due while the daemon cannot reach Redis fire after the link is back, exactly once."""
    server = servers.start()
    keys = [f"send_message-{i}-outage" for i in range(20)]
    with TcpProxy(server.port) as proxy:
        cfg = webhook_config(tmp_path / "cfg.yaml", proxy.url(), receiver)
        daemons.start(cfg)
        with api(cfg, server.url) as r:  # the test itself talks to Redis directly
            r.schedule_many((k, None, When(in_=500 + i * 25)) for i, k in enumerate(keys))
            last_due = max(rem.due_at_ms for rem in r.list(limit=100))
        proxy.pause(drop=drop)
        client = server.client()
        wait_until(lambda: redis_now_ms(client) > last_due + 1000, 10, "every reminder due, plus 1 s")
        assert receiver.requests == []
        time.sleep(1.0)  # the outage window: keep the link cut a while longer
        assert receiver.requests == []
        proxy.resume()
        tally = Tally(receiver).wait_covered(keys, ("/a", "/b"), 20)
        wait_until(lambda: client.zcard("reminderd:due") == 0, 10, "an empty index")
        tally.assert_exactly_once(keys, ("/a", "/b"))
        client.close()


PERSISTENCE = {
    "aof": ("--appendonly", "yes", "--appendfsync", "always"),
    "rdb": ("--save", "3600 1"),  # RDB configured; the snapshot is the explicit SAVE below
}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["aof", "rdb"])
def test_redis_restart_with_persistence_fires_everything_once(
    tmp_path: Path, servers: Servers, receiver: HttpReceiver, daemons: Daemons, mode: str
) -> None:
    """Redis restarted (AOF, or RDB saved first) while reminders came due: noticed, swept, each fired once."""
    server = servers.start(*PERSISTENCE[mode])
    cfg = webhook_config(tmp_path / "cfg.yaml", server.url, receiver)
    d = daemons.start(cfg)
    keys = [f"send_message-{i}-restart" for i in range(30)]
    with api(cfg, server.url) as r:
        r.schedule_many((k, None, When(in_=800 + i * 20)) for i, k in enumerate(keys[:15]))
        r.schedule_many((k, None, When(in_=4000 + i * 20)) for i, k in enumerate(keys[15:]))
    client = server.client()
    if mode == "rdb":
        client.save()
    client.close()
    server.stop()
    time.sleep(1.5)  # the downtime window: the first 15 reminders come due while Redis is down
    server.start()
    restarted_s = time.time()
    d.wait_for("redis.server_changed", timeout_s=10)
    tally = Tally(receiver).wait_covered(keys, ("/a", "/b"), 20)
    missed = [q for q in receiver.requests if q.json()["key"] in keys[:15]]
    assert max(q.received_at_s for q in missed) - restarted_s < 3.0  # swept at once, not much later
    client = server.client()
    wait_until(lambda: client.zcard("reminderd:due") == 0, 10, "an empty index")
    tally.assert_exactly_once(keys, ("/a", "/b"))
    assert d.find("redis.data_lost") == []
    client.close()


@pytest.mark.slow
def test_data_loss_is_told_from_the_server_even_after_a_producer_wrote(
    tmp_path: Path, servers: Servers, receiver: HttpReceiver, daemons: Daemons
) -> None:
    """A producer writing into the restarted, empty Redis first does not hide the loss; status shows it."""
    server = servers.start()
    cfg = webhook_config(tmp_path / "cfg.yaml", server.url, receiver, daemon={"heartbeat_interval": "2s"})
    d = daemons.start(cfg)
    with api(cfg, server.url) as r:
        r.schedule_many((f"send_message-{i}-gone", None, When(in_=60_000)) for i in range(10))
    server.restart()
    with api(cfg, server.url) as r:  # before the next heartbeat looks at the server
        r.schedule("send_message-1-first", when=When(in_=60_000))
    d.wait_for("redis.data_lost", timeout_s=10)
    done = subprocess.run(
        [sys.executable, "-m", "reminderd", "status", "--json", "--config", str(cfg)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    warnings = json.loads(done.stdout)["warnings"]
    assert any(w.startswith("Redis lost its data set ") for w in warnings), warnings


@pytest.mark.slow
def test_redis_restart_without_persistence_says_data_lost_and_fires_nothing(
    tmp_path: Path, servers: Servers, receiver: HttpReceiver, daemons: Daemons
) -> None:
    """Redis restarted without persistence: the daemon logs redis.data_lost and fires none of the lost."""
    server = servers.start()
    cfg = webhook_config(tmp_path / "cfg.yaml", server.url, receiver)
    d = daemons.start(cfg)
    keys = [f"send_message-{i}-gone" for i in range(10)]
    with api(cfg, server.url) as r:
        r.schedule_many((k, None, When(in_=1500)) for k in keys)
        last_due = max(rem.due_at_ms for rem in r.list(limit=100))
    server.restart()
    d.wait_for("redis.server_changed", timeout_s=10)
    d.wait_for("redis.data_lost", timeout_s=5)
    client = server.client()
    wait_until(lambda: redis_now_ms(client) > last_due + 1500, 10, "the lost reminders' due time, plus 1.5 s")
    assert receiver.requests == []
    with api(cfg, server.url) as r:  # and the daemon still works on the new, empty Redis
        r.schedule("send_message-1-after", when=When(in_=100))
    Tally(receiver).wait_covered(["send_message-1-after"], ("/a", "/b"), 10).assert_exactly_once(
        ["send_message-1-after"], ("/a", "/b")
    )
    client.close()
