"""``reminderd status`` on Redis Cluster: the same report, read from the shards and every node.

On one Redis the report reads one due index and asks the one server for its version, flags
and persistence. On Cluster the index is ``redis.shards`` indexes spread over the primaries
(the store's reads merge them), the flags and the rest are each node's own (``CONFIG SET``
is not replicated), and the heartbeats are keys in many slots (read by a pipeline of GETs,
which the cluster client groups by node; one ``MGET`` would be cross-slot). The subscriber
state per primary comes from the newest heartbeat that carries it. Reads only.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from reminderd.api.status import DaemonInfo, StatusReport, live_daemons, status_warnings
from reminderd.api.topology import cluster_topology_of
from reminderd.config.model import Settings
from reminderd.storage import epoch
from reminderd.storage.server import required_flags
from reminderd.storage.store import Store, key_of


async def collect_cluster(
    client: aioredis.Redis, settings: Settings, target: str, store: Store
) -> StatusReport:
    """The status report of the cluster ``client`` routes to, ``store`` its sharded store."""
    now_ms = await store.now_ms()
    daemons = await live_daemons(client, store.names, now_ms, settings.daemon.heartbeat_interval_ms)
    required = required_flags(settings.daemon.raw_key_events)
    topology, found = await cluster_topology_of(settings.redis, required, _subscribers(daemons))
    primaries = [n for n in topology.nodes if n.role == "master"]
    flags = {n.flags for n in primaries}
    report = StatusReport(
        redis=target,
        now_ms=now_ms,
        redis_version=", ".join(sorted({n.version for n in topology.nodes})) or "?",
        role=f"cluster of {len(primaries)} primaries, {store.layout.shards} shards",
        notifications=flags.pop() if len(flags) == 1 else "per node (see topology)",
        notifications_ok=all(n.flags_ok for n in primaries) if primaries else None,
        persistence="per node (see warnings)",
        maxmemory_policy="per node (see warnings)",
        backlog_alert_ms=settings.daemon.backlog_alert_ms,
        daemons=daemons,
        topology=topology,
        **await _index(store, now_ms),
    )
    loss = await epoch.last_loss(client, store.names)
    report.data_lost_ms = int(loss["at_ms"]) if loss and isinstance(loss.get("at_ms"), int) else None
    report.warnings = status_warnings(report) + found
    return report


async def _index(store: Store, now_ms: int) -> dict[str, Any]:
    """The report's figures of the index, merged over the shards."""
    scheduled, due = await store.counts(now_ms)
    first = await store.next_due()
    first_ms = first[1] if first else None
    return {
        "scheduled": scheduled,
        "due_now": due,
        "oldest_due_ms": first_ms if due and first_ms is not None else None,
        "next_due_key": key_of(first[0]) if first else None,
        "next_due_ms": first_ms,
        "dead_letters": await store.dead_count(),
        "stats": await store.stats(),
    }


def _subscribers(daemons: list[DaemonInfo]) -> dict[str, str]:
    """The subscriber state per primary, from the newest heartbeat that reports it."""
    for d in sorted(daemons, key=lambda d: d.beat_ms, reverse=True):
        if d.nodes:
            return dict(d.nodes)
    return {}
