"""Sentinel failover under load with two daemons: what ``redis.wait_replicas`` buys, counted.

The replica replicates through a TCP proxy. In the middle of a burst the proxy holds the
replication stream for ``STALL_S`` (a lagging replica), then the primary is killed (-9) and
what the proxy held is dropped: every claim and finish the primary acknowledged in those
``STALL_S`` is gone on the promoted replica, so those occurrences are claimed (and sent)
again. Every reminder must fire; the repeated sends are counted exactly and printed; with
``wait_replicas: 1`` (and a ``wait_timeout`` longer than the stall) there are none: no claim
was answered, so nothing was sent, before the replica held it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from reminderd.api import When
from tests.daemon_proc import wait_until
from tests.faults import Tally, api, webhook_config
from tests.faults.conftest import Daemons
from tests.faults.tcp_proxy import TcpProxy
from tests.http_receiver import HttpReceiver
from tests.sentinel_topology import SentinelTopology

COUNT, SPREAD_MS, LEAD_MS = 1500, 4000, 1500  # reminders, due over 4 s, starting 1.5 s from now
STALL_S = 0.3  # how long the replica falls behind before the primary dies


def _through_proxy(topology: SentinelTopology) -> TcpProxy:
    """Point the replica at the primary through a proxy; return once its link is up and caught up."""
    proxy = TcpProxy(topology.primary.port).start()
    topology.replica.client().replicaof("127.0.0.1", proxy.port)

    def caught_up() -> bool:
        info = topology.replica.client().info("replication")
        primary_offset = int(topology.primary.client().info("replication")["master_repl_offset"])
        return (
            info["master_port"] == proxy.port
            and info["master_link_status"] == "up"
            and (int(info["master_repl_offset"]) >= primary_offset)
        )

    wait_until(caught_up, 15, "the replica linked through the proxy")
    return proxy


def _lateness_s(tally: Tally, receiver: HttpReceiver, due_s: dict[str, float]) -> list[float]:
    """Per key, its first delivery minus its due time (wall clock), sorted."""
    first: dict[str, float] = {}
    for q in receiver.requests:
        key = str(q.json()["key"])
        first.setdefault(key, q.received_at_s)
    return sorted(first[k] - due for k, due in due_s.items())


@pytest.mark.slow
@pytest.mark.parametrize("wait_replicas", [0, 1])
def test_kill_primary_mid_burst_two_daemons(
    tmp_path: Path,
    fresh_sentinels: SentinelTopology,
    receiver: HttpReceiver,
    daemons: Daemons,
    wait_replicas: int,
) -> None:
    """kill -9 of the primary mid-burst: every reminder fires; with wait_replicas: 1, exactly once."""
    topology = fresh_sentinels
    cfg = webhook_config(
        tmp_path / "d.yaml",
        topology.url(),
        receiver,
        processors=("a",),
        daemon={"lease": "10s", "concurrency": 200, "heartbeat_interval": "60s"},
        redis={"wait_replicas": wait_replicas, "wait_timeout": "2s"},
    )
    proxy = _through_proxy(topology)
    procs = [daemons.start(cfg, name=f"d{i}") for i in range(2)]
    keys = [f"send_message-{i}-burst" for i in range(COUNT)]
    offsets_ms = {k: LEAD_MS + SPREAD_MS * i // COUNT for i, k in enumerate(keys)}
    scheduled_s = time.time()
    with api(cfg, topology.url()) as r:
        r.schedule_many((k, None, When(in_=ms)) for k, ms in offsets_ms.items())
    tally = Tally(receiver)
    wait_until(lambda: len(receiver.requests) >= COUNT // 3, 20, "a third of the burst fired")
    proxy.pause(drop=False)  # the replica falls behind: the primary's writes wait in the proxy
    time.sleep(STALL_S)  # the fault's length, not a wait for a condition
    killed_wall = time.time()
    topology.primary.kill()
    proxy.pause()  # what the proxy held is lost with the primary
    new = topology.wait_failover(topology.primary.port)
    proxy.close()
    tally.wait_covered(keys, ["/a"], 60)
    wait_until(lambda: new.client().zcard("reminderd:due") == 0, 20, "an empty index")
    for proc in procs:
        proc.wait_for("redis.primary_followed", timeout_s=15)
    tally.update()
    duplicates = sum(n - 1 for n in tally.calls.values())
    fired_before = sum(1 for q in receiver.requests if q.received_at_s <= killed_wall)
    late = _lateness_s(tally, receiver, {k: scheduled_s + ms / 1000 for k, ms in offsets_ms.items()})
    print(
        f"\nwait_replicas={wait_replicas}: {COUNT} reminders, {fired_before} fired before the kill, "
        f"duplicates {duplicates}, lateness p50 {late[len(late) // 2]:.2f}s max {late[-1]:.2f}s"
    )
    if wait_replicas:
        tally.assert_exactly_once(keys, ["/a"])
    else:  # the control: the stall did lose acknowledged claims and finishes (114 of 1,500 here)
        assert duplicates > 0
