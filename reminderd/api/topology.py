"""The topology part of ``reminderd status``: lines and warnings from ``storage.topology``."""

from __future__ import annotations

from collections.abc import Mapping

import redis.asyncio as aioredis

from reminderd.config.model import RedisSettings
from reminderd.storage.cluster import node_client
from reminderd.storage.cluster_facts import NodeFacts, cluster_facts, cluster_findings
from reminderd.storage.connection import sentinel_spec
from reminderd.storage.nodes import shards_from
from reminderd.storage.topology import Replica, SentinelView, Topology, read_topology

LAG_WARN_BYTES = 1_048_576  # a replica this far behind would lose that much at a failover


async def topology_of(
    client: aioredis.Redis, settings: RedisSettings, target: str
) -> tuple[Topology, list[str]]:
    """The topology ``client`` reaches (``target``: how to name it) and its warnings."""
    spec = sentinel_spec(settings, settings.url) if settings.sentinel is not None else None
    topology = await read_topology(client, spec, target)
    return topology, topology_warnings(topology, settings.wait_replicas)


async def cluster_topology_of(
    settings: RedisSettings, required: str, subscribers: Mapping[str, str] | None = None
) -> tuple[Topology, list[str]]:
    """Every node of the cluster ``settings.cluster`` names, asked on its own connection, and
    the doctor's findings per node; ``subscribers``: a daemon's subscriber state per primary."""
    spec = settings.cluster
    assert spec is not None, "cluster_topology_of needs redis.cluster"
    shards = await shards_from(lambda a: node_client(settings, spec, a), spec.addresses)
    nodes = await cluster_facts(lambda a: node_client(settings, spec, a), shards, required)
    first = shards[0].primary.address if shards else "?"
    topology = Topology("cluster", "master", first, nodes=nodes, subscribers=dict(subscribers or {}))
    found = cluster_findings(nodes)
    for shard in shards:
        online = [r for r in shard.replicas if r.health == "online"]
        if not shard.replicas:
            found.append(f"primary {shard.primary.address} has no replica: a failover has nothing to promote")
        elif settings.wait_replicas > len(online):
            found.append(
                f"redis.wait_replicas is {settings.wait_replicas} but primary {shard.primary.address} has "
                f"{len(online)} online replica(s)"
            )
    return topology, found


def topology_rows(t: Topology) -> list[tuple[str, str]]:
    """``topology`` then one row per replica and per sentinel (``align``-ed by the caller)."""
    if t.kind == "cluster":
        return cluster_rows(t)
    head = f"{t.kind}, " + (f"master {t.master}, " if t.master else "")
    head += f"{t.primary} ({t.role}), {len(t.replicas)} replica(s)"
    rows = [("topology", head)]
    rows += [("  replica", _replica_text(r)) for r in t.replicas]
    rows += [("  sentinel", _sentinel_text(s)) for s in t.sentinels]
    return rows


def topology_warnings(t: Topology, wait_replicas: int) -> list[str]:
    """What in the topology puts a failover, or ``redis.wait_replicas``, at risk."""
    found = []
    if t.kind == "sentinel" and not t.replicas:
        found.append("no replica connected to the primary: a failover has nothing to promote")
    for r in t.replicas:
        if r.state != "online":
            found.append(f"replica {r.address} is {r.state}, not online")
        elif r.lag_bytes is not None and r.lag_bytes > LAG_WARN_BYTES:
            found.append(f"replica {r.address} is {r.lag_bytes} bytes behind the primary")
    down = [s.node for s in t.sentinels if s.error is not None]
    if down:
        found.append(f"sentinel(s) not answering: {', '.join(down)}")
    named = {s.primary for s in t.sentinels if s.primary is not None}
    if len(named) > 1 or (named and t.primary not in named):
        found.append(f"the sentinels name {', '.join(sorted(named))} as the primary; reached {t.primary}")
    online = sum(r.state == "online" for r in t.replicas)
    if wait_replicas > online:
        found.append(
            f"redis.wait_replicas is {wait_replicas} but {online} replica(s) are online: "
            "claims and finishes are not acknowledged (reminderd_replication_short_total)"
        )
    return found


def _replica_text(r: Replica) -> str:
    lag = "lag unknown" if r.lag_bytes is None else f"lag {r.lag_bytes} bytes"
    return f"{r.address} {r.state}, {lag}"


def _sentinel_text(s: SentinelView) -> str:
    if s.error is not None:
        return f"{s.node} unreachable: {s.error}"
    return f"{s.node} names {s.primary}, sees {s.replicas} replica(s) and {s.sentinels} other sentinel(s)"


def cluster_rows(t: Topology) -> list[tuple[str, str]]:
    """``topology`` then one row per node: primaries with their slots, each followed by its replicas."""
    primaries = [n for n in t.nodes if n.role == "master"]
    head = f"cluster, {len(primaries)} primaries, {len(t.nodes) - len(primaries)} replica(s)"
    return [("topology", head)] + [
        (f"  {n.role if n.role == 'replica' else 'primary'}", _node_text(n, t)) for n in t.nodes
    ]


def _node_text(n: NodeFacts, t: Topology) -> str:
    if n.error is not None:
        return f"{n.address} unreachable: {n.error}"
    where = f"slots {n.slots}" if n.role == "master" else f"of {n.primary}, link {n.link or '?'}"
    flags = "flags unknown (CONFIG not allowed)" if n.flags is None else f"flags {n.flags!r}"
    text = f"{n.address} {where}, {n.version}, {flags}"
    if n.role == "master" and n.address in t.subscribers:
        text += f", subscriber {t.subscribers[n.address]}"
    return text
