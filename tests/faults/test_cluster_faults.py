"""Daemons on a real Redis Cluster under faults: kill -9 of a primary, a reshard with a node
added, a daemon killed while holding claims. Every reminder is counted exactly.

Replication is asynchronous and ``redis.wait_replicas`` is refused on Cluster (``WAIT`` must
follow the write on its connection, which the routing client does not guarantee), so a
primary killed mid-burst may lose claims and ledger writes it had acknowledged: those
occurrences may fire again, and only those, so a repeat is allowed only for a reminder whose
shard lived on the killed primary. They are counted and printed.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from pathlib import Path

import pytest
from redis.crc import key_slot

from reminderd.api import When
from reminderd.storage.layout import Layout
from tests.cluster_topology import ClusterNode, ClusterTopology
from tests.daemon_proc import DaemonProcess, wait_until
from tests.faults import api, complete, trigger_key, webhook_config
from tests.faults.conftest import Daemons
from tests.http_receiver import HttpReceiver, Reply

pytestmark = pytest.mark.slow
COUNT, SPREAD_MS, LEAD_MS = 2000, 10_000, 2000  # reminders, due over 10 s, the first 2 s from now
SHARDS = 16
QUIET = {"adoption_interval": "60s"}  # a raw key set later fires from its expired event, or not at all


def url_of(topology: ClusterTopology) -> str:
    """The cluster's seed nodes as a ``redis+cluster://`` URL."""
    return "redis+cluster://" + ",".join(topology.nodes)


def start_daemons(
    tmp_path: Path,
    topology: ClusterTopology,
    receiver: HttpReceiver,
    daemons: Daemons,
    names: tuple[str, ...],
    lease: str = "2s",
) -> tuple[Path, dict[str, DaemonProcess]]:
    """One daemon per name, each posting to ``/<name>`` (so each call says who sent it)."""
    cfgs = {
        name: webhook_config(
            tmp_path / f"{name}.yaml",
            url_of(topology),
            receiver,
            processors=("a",),
            processor_options={"a": {"url": receiver.url(f"/{name}")}},
            daemon={**QUIET, "lease": lease},
            redis={"url": url_of(topology), "shards": SHARDS},
        )
        for name in names
    }
    procs = {name: daemons.start(cfg, name=name, wait_ready=False) for name, cfg in cfgs.items()}
    for proc in procs.values():
        proc.wait_for("daemon.started", timeout_s=30)
    return cfgs[names[0]], procs


def fired(receiver: HttpReceiver) -> Counter[str]:
    """Completed calls per trigger key, whichever daemon sent them."""
    return Counter(trigger_key(q) for q in receiver.requests if complete(q))


def first_at(receiver: HttpReceiver) -> dict[str, float]:
    """The wall time of each key's first call."""
    found: dict[str, float] = {}
    for q in filter(complete, receiver.requests):
        found.setdefault(trigger_key(q), q.received_at_s)
    return found


def shard_slot(key: str) -> int:
    """The slot of the shard that holds ``key``'s reminder."""
    return int(key_slot(Layout.cluster("reminderd", SHARDS).names_of(key).due.encode()))


def owned(slot: int, ranges: tuple[tuple[int, int], ...]) -> bool:
    """Whether ``slot`` lies in ``ranges``."""
    return any(low <= slot <= high for low, high in ranges)


def keys_in(slots: range | list[int], prefix: str, count: int) -> list[str]:
    """``count`` raw trigger keys whose slots are among ``slots``."""
    wanted, found, n = set(slots), [], 0
    while len(found) < count:
        key = f"{prefix}{n}-raw"
        if key_slot(key.encode()) in wanted:
            found.append(key)
        n += 1
    return found


def test_kill_primary_mid_burst_two_daemons(
    tmp_path: Path, fresh_cluster: ClusterTopology, receiver: HttpReceiver, daemons: Daemons
) -> None:
    """2 000 reminders over 10 s, kill -9 of a primary half-way: all fire, repeats only from its shards."""
    topology = fresh_cluster
    # A lease longer than the failover: while a primary is down every shard's renewal fails
    # (see tests/faults/test_cluster_store_down.py), and a lapsed lease is a repeat anywhere.
    cfg, procs = start_daemons(tmp_path, topology, receiver, daemons, ("d0", "d1"), lease="10s")
    keys = [f"send_message-{i}-burst" for i in range(COUNT)]
    scheduled_s = time.time()
    with api(cfg, url_of(topology)) as r:
        r.schedule_many((k, None, When(in_=LEAD_MS + i * SPREAD_MS // COUNT)) for i, k in enumerate(keys))
    due_s = {k: scheduled_s + (LEAD_MS + i * SPREAD_MS // COUNT) / 1000 for i, k in enumerate(keys)}
    receiver.wait_for(lambda reqs: len(reqs) >= COUNT // 2, timeout_s=30)
    victim = topology.primaries()[0]
    victim_slots = topology.slots_of(victim)
    killed_s = time.time()
    topology.kill_primary(victim)
    new = topology.wait_failover(victim)
    promoted_s = time.time() - killed_s
    wait_until(lambda: set(keys) <= set(fired(receiver)), 60, "every reminder fired")
    calls = fired(receiver)
    repeats = {k: n for k, n in calls.items() if n > 1}
    late = {k: t - due_s[k] for k, t in first_at(receiver).items() if k in due_s and due_s[k] > killed_s}
    on_victim = sorted(v for k, v in late.items() if owned(shard_slot(k), victim_slots))
    elsewhere = sorted(v for k, v in late.items() if not owned(shard_slot(k), victim_slots))
    print(
        f"\nkill -9 -> replica promoted {promoted_s:.2f}s; repeats {len(repeats)} of {COUNT} "
        f"{sorted(repeats)[:10]}; lateness of reminders due after the kill, "
        f"shards on the killed primary: {_spread(on_victim)}; on the others: {_spread(elsewhere)}"
    )
    assert all(n <= 2 for n in repeats.values()), repeats
    assert all(owned(shard_slot(k), victim_slots) for k in repeats), "a repeat outside the killed shards"
    flags = str(new.client().config_get("notify-keyspace-events")["notify-keyspace-events"])
    assert {"E", "x"} <= set(flags), flags
    raw = topology.key_on(new, "send_message-promoted-")
    with new.client() as c:
        c.set(raw, "1", px=300)  # only its expired event on the promoted replica finds it
    wait_until(lambda: fired(receiver)[raw] == 1, 10, "the raw key on the promoted replica")
    for proc in procs.values():
        assert proc.find("cluster.node_added", lambda e: e["node"] == new.address and e["gap"])


def _spread(values: list[float]) -> str:
    """p50, p99 and max of sorted ``values`` in seconds."""
    if not values:
        return "none"
    p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
    return f"p50 {statistics.median(values):.2f}s p99 {p99:.2f}s max {values[-1]:.2f}s (n={len(values)})"


def test_reshard_and_a_node_added_while_reminders_come_due(
    tmp_path: Path, fresh_cluster: ClusterTopology, receiver: HttpReceiver, daemons: Daemons
) -> None:
    """500 slots moved, a node added and given 300 more, under API reminders and raw keys in the
    moved slots: each fires exactly once."""
    topology = fresh_cluster
    cfg, procs = start_daemons(tmp_path, topology, receiver, daemons, ("d0",))
    first, second, third = topology.primaries()
    moved = [s for low, high in topology.slots_of(first) for s in range(low, high + 1)][:500]
    to_new = [s for low, high in topology.slots_of(third) for s in range(low, high + 1)][:300]
    raw = keys_in(moved, "send_message-m", 30) + keys_in(to_new, "send_message-n", 30)
    keys = [f"send_message-{i}-reshard" for i in range(500)]
    with api(cfg, url_of(topology)) as r:
        r.schedule_many((k, None, When(in_=1500 + 16 * i)) for i, k in enumerate(keys))
    for i, key in enumerate(raw):
        with topology.node_for_key(key).client() as c:
            c.set(key, "1", px=1500 + 200 * i)  # due while the slots move, and after
    topology.migrate_slots(first, second, 500)
    spare = topology.add_node()
    topology.wait_ok()  # the new node knows the slot map before it takes slots
    topology.migrate_slots(third, spare, 300)
    # A primary without slots is nobody's to watch; once it owns some, it is (and a gap: scanned).
    procs["d0"].wait_for("cluster.node_added", lambda e: e["node"] == spare.address, timeout_s=15)
    wait_until(lambda: set(keys + raw) <= set(fired(receiver)), 60, "every reminder fired")
    wait_until(lambda: _index_empty(topology), 15, "an empty index")
    calls = fired(receiver)
    assert {k: n for k, n in calls.items() if n != 1} == {}
    assert set(calls) == set(keys + raw)
    print(f"\nreshard: {len(keys)} API reminders and {len(raw)} raw keys in moved slots fired once each")


def _index_empty(topology: ClusterTopology) -> bool:
    """No shard's due index holds an entry (read on each live primary)."""
    layout = Layout.cluster("reminderd", SHARDS)
    total = 0
    for names in layout.shard_names:
        node: ClusterNode = topology.node_for_key(names.due)
        with node.client() as c:
            total += int(c.zcard(names.due))
    return total == 0


def test_a_daemon_killed_holding_claims_its_leases_go_to_the_survivor(
    tmp_path: Path, cluster: ClusterTopology, receiver: HttpReceiver, daemons: Daemons
) -> None:
    """d0's calls hang; kill -9 of d0: after its leases lapse d1 fires every one of them, once."""
    receiver.script([Reply(hang=True)] * 400, path="/d0")
    _cfg, procs = start_daemons(tmp_path, cluster, receiver, daemons, ("d0", "d1"))
    keys = [f"send_message-{i}-lease" for i in range(200)]
    with api(_cfg, url_of(cluster)) as r:
        r.schedule_many((k, None, When(in_=1500 + 5 * i)) for i, k in enumerate(keys))
    receiver.wait_for(lambda reqs: sum(q.path == "/d0" for q in reqs) >= 16, timeout_s=20)
    held = {trigger_key(q) for q in receiver.requests_for("/d0")}
    killed_s = time.time()
    procs["d0"].kill()
    wait_until(lambda: set(keys) <= {trigger_key(q) for q in receiver.requests_for("/d1")} | held, 30, "all")
    wait_until(lambda: held <= {trigger_key(q) for q in receiver.requests_for("/d1")}, 30, "held ones re-run")
    by_d1 = Counter(trigger_key(q) for q in receiver.requests_for("/d1"))
    assert all(n == 1 for n in by_d1.values()), {k: n for k, n in by_d1.items() if n > 1}
    assert set(by_d1) | held == set(keys)
    took = [q.received_at_s - killed_s for q in receiver.requests_for("/d1") if trigger_key(q) in held]
    print(
        f"\n{len(held)} occurrences held by the killed daemon re-run {min(took):.2f}-{max(took):.2f}s after"
    )
    assert min(took) >= 0
