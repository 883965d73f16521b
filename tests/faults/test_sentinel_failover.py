"""Sentinel failover under a daemon: kill -9 of the primary while reminders come due."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from reminderd.api import When
from tests.daemon_proc import DaemonProcess, wait_until
from tests.faults import Tally, api, webhook_config
from tests.faults.conftest import Daemons
from tests.http_receiver import HttpReceiver
from tests.redis_server import RedisServer
from tests.sentinel_topology import MASTER, SentinelTopology

BEFORE, DURING = 50, 150  # reminders due before the kill, and due while the primary is down or after


def _replicated(primary: RedisServer, replica: RedisServer) -> bool:
    """True once the replica has every write the primary took (so a kill loses none)."""
    offset = int(primary.client().info("replication")["master_repl_offset"])
    return int(replica.client().info("replication")["master_repl_offset"]) >= offset


def _first_write_s(topology: SentinelTopology, killed_at: float) -> float:
    """Seconds from the kill until a write through the sentinels succeeds on a new primary."""
    while True:
        try:
            port = topology.primary_port()
            if port != topology.primary.port:
                with redis.Redis(port=port, socket_timeout=1) as c:
                    c.set("probe", "1")
                return time.monotonic() - killed_at
        except (redis.RedisError, AssertionError):
            pass
        assert time.monotonic() - killed_at < 30, "no writable primary 30 s after the kill"
        time.sleep(0.02)


def _daemon_on_sentinels(
    tmp_path: Path, topology: SentinelTopology, receiver: HttpReceiver, daemons: Daemons
) -> tuple[Path, DaemonProcess]:
    """A daemon through the sentinels; a long heartbeat, so a failover must be followed from
    +switch-master, not noticed later by the heartbeat."""
    cfg = webhook_config(
        tmp_path / "d.yaml",
        topology.url(),
        receiver,
        processors=("a",),
        daemon={"heartbeat_interval": "60s", "adoption_interval": "60s"},
    )
    return cfg, daemons.start(cfg)


@pytest.mark.slow
def test_kill_primary_every_reminder_fires_once(
    tmp_path: Path, fresh_sentinels: SentinelTopology, receiver: HttpReceiver, daemons: Daemons
) -> None:
    """kill -9 of the primary: every reminder fires exactly once, the new primary gets the flags."""
    topology = fresh_sentinels
    cfg, proc = _daemon_on_sentinels(tmp_path, topology, receiver, daemons)
    before = [f"send_message-{i}-before" for i in range(BEFORE)]
    during = [f"send_message-{i}-during" for i in range(DURING)]
    with api(cfg, topology.url()) as r:
        r.schedule_many((k, None, When(in_=1000 + 10 * i)) for i, k in enumerate(before))
        r.schedule_many((k, None, When(in_=3000 + 20 * i)) for i, k in enumerate(during))
    tally = Tally(receiver).wait_covered(before, ["/a"], 15)
    wait_until(lambda: _replicated(topology.primary, topology.replica), 5, "the replica caught up")
    killed_wall, killed_at = time.time(), time.monotonic()
    topology.primary.kill()
    write_s = _first_write_s(topology, killed_at)
    new = topology.wait_failover(topology.primary.port)
    tally.wait_covered(during, ["/a"], 30)
    after_kill = [q.received_at_s for q in receiver.requests if q.received_at_s > killed_wall]
    fire_s = min(after_kill) - killed_wall
    print(f"\nkill -9 -> first write on the new primary {write_s:.2f}s, -> first fire {fire_s:.2f}s")
    followed = proc.wait_for("redis.primary_followed", timeout_s=10)[0]
    assert followed["reason"] == "switch-master"
    assert followed["primary"] == f"127.0.0.1:{new.port}"
    flags = str(new.client().config_get("notify-keyspace-events")["notify-keyspace-events"])
    assert "E" in flags, flags
    assert "x" in flags or "A" in flags, flags
    new.client().set("send_message-raw-after", "1", px=300)  # raw: only its expired event finds it
    tally.wait_covered(["send_message-raw-after"], ["/a"], 5)
    # An empty index: nothing is left that could fire again.
    wait_until(lambda: new.client().zcard("reminderd:due") == 0, 10, "an empty index")
    tally.assert_exactly_once([*before, *during, "send_message-raw-after"], ["/a"])
    assert len(proc.find("redis.primary_followed")) == 1  # three sentinels announced it: one follow
    status = subprocess.run(
        [sys.executable, "-m", "reminderd", "status", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert status.returncode == 0, status.stdout + status.stderr


@pytest.mark.slow
def test_manual_failover_moves_the_subscriber(
    tmp_path: Path, fresh_sentinels: SentinelTopology, receiver: HttpReceiver, daemons: Daemons
) -> None:
    """After SENTINEL FAILOVER (old primary alive, now a replica) raw keys fire from the new one's events."""
    topology = fresh_sentinels
    _cfg, proc = _daemon_on_sentinels(tmp_path, topology, receiver, daemons)
    with topology.sentinels[0].client() as sentinel:
        sentinel.sentinel_failover(MASTER)
    new = topology.wait_failover(topology.primary.port)
    proc.wait_for("redis.primary_followed", timeout_s=15)
    demoted = lambda: topology.primary.client().info("replication")["role"] == "slave"  # noqa: E731
    wait_until(demoted, 15, "a demoted primary")
    new.client().set("send_message-raw-moved", "1", px=300)  # raw: only its expired event finds it
    Tally(receiver).wait_covered(["send_message-raw-moved"], ["/a"], 5)
    assert len(proc.find("redis.primary_followed")) == 1  # three sentinels announced it: one follow
