"""The topology part of ``reminderd status``: lines and warnings from ``storage.topology``."""

from __future__ import annotations

import redis.asyncio as aioredis

from reminderd.config.model import RedisSettings
from reminderd.storage.connection import sentinel_spec
from reminderd.storage.topology import Replica, SentinelView, Topology, read_topology

LAG_WARN_BYTES = 1_048_576  # a replica this far behind would lose that much at a failover


async def topology_of(
    client: aioredis.Redis, settings: RedisSettings, target: str
) -> tuple[Topology, list[str]]:
    """The topology ``client`` reaches (``target``: how to name it) and its warnings."""
    spec = sentinel_spec(settings, settings.url) if settings.sentinel is not None else None
    topology = await read_topology(client, spec, target)
    return topology, topology_warnings(topology, settings.wait_replicas)


def topology_rows(t: Topology) -> list[tuple[str, str]]:
    """``topology`` then one row per replica and per sentinel (``align``-ed by the caller)."""
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
