"""Where the data lives: the server's role and replicas, and what each sentinel says (reads only).

``reminderd status`` shows it. The replicas come from the primary's ``INFO replication``
(address, link state, how many bytes of the replication stream each is behind); under
Sentinel every configured sentinel is asked on its own connection (no retries, short
timeouts: ``sentinel.sentinel_options``) which primary it names and how many replicas and
other sentinels it sees, so a sentinel that is down or disagrees shows as such.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from reminderd.config.sentinel import SentinelSettings
from reminderd.storage.cluster_facts import NodeFacts
from reminderd.storage.sentinel import WatchedPool, sentinel_options


@dataclass(frozen=True, slots=True)
class Replica:
    """One replica as its primary sees it."""

    address: str
    state: str  # online, wait_bgsave, send_bulk, ...
    lag_bytes: int | None  # replication stream bytes it has not acknowledged yet


@dataclass(frozen=True, slots=True)
class SentinelView:
    """One configured sentinel: the primary it names, or why it could not be asked."""

    node: str
    primary: str | None = None
    replicas: int | None = None  # replicas it knows of
    sentinels: int | None = None  # other sentinels it knows of
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Topology:
    """Standalone (one server), Sentinel (its master name, primary, replicas, sentinels) or
    Cluster (every node: ``nodes``; the subscriber state per primary where a daemon reports it)."""

    kind: str  # "standalone", "sentinel" or "cluster"
    role: str  # of the server the client reached: master or slave
    primary: str  # host:port (or the socket) of the server the client reached
    replicas: list[Replica] = field(default_factory=list)
    master: str | None = None  # the name the sentinels monitor it under
    sentinels: list[SentinelView] = field(default_factory=list)
    nodes: list[NodeFacts] = field(default_factory=list)
    subscribers: dict[str, str] = field(default_factory=dict)  # primary address -> state


def replicas_of(info: dict[str, Any]) -> list[Replica]:
    """The ``slaveN`` entries of ``INFO replication`` (as redis-py parses them)."""
    offset = int(info.get("master_repl_offset", 0) or 0)
    found = []
    for index in range(int(info.get("connected_slaves", 0) or 0)):
        entry = info.get(f"slave{index}")
        if not isinstance(entry, dict):
            continue
        acked = entry.get("offset")
        lag = max(0, offset - int(acked)) if isinstance(acked, int) else None
        found.append(
            Replica(f"{entry.get('ip', '?')}:{entry.get('port', '?')}", str(entry.get("state", "?")), lag)
        )
    return found


async def read_topology(client: aioredis.Redis, spec: SentinelSettings | None, address: str) -> Topology:
    """The topology seen from ``client`` (reached at ``address``; under Sentinel the primary
    its pool found) and, under Sentinel, what each of ``spec``'s sentinels says."""
    info = await client.info("replication")
    role, replicas = str(info.get("role", "?")), replicas_of(info)
    if spec is None:
        return Topology("standalone", role, address, replicas)
    pool = client.connection_pool
    if isinstance(pool, WatchedPool) and pool.master_address:
        host, port = pool.master_address
        address = f"{host}:{port}"
    views = await asyncio.gather(*(ask_sentinel(spec, node) for node in spec.nodes))
    return Topology("sentinel", role, address, replicas, spec.master, list(views))


async def ask_sentinel(spec: SentinelSettings, node: str) -> SentinelView:
    """What the sentinel at ``node`` says of ``spec.master``."""
    host, port = next(a for n, a in zip(spec.nodes, spec.addresses, strict=True) if n == node)
    client = aioredis.Redis(host=host, port=port, decode_responses=True, **sentinel_options(spec))
    try:
        state: Any = await client.sentinel_master(spec.master)
    except (RedisError, OSError) as exc:
        return SentinelView(node, error=str(exc) or type(exc).__name__)
    finally:
        await client.aclose()
    return SentinelView(
        node,
        primary=f"{state.get('ip', '?')}:{state.get('port', '?')}",
        replicas=int(state.get("num-slaves", 0)),
        sentinels=int(state.get("num-other-sentinels", 0)),
    )
