"""What each node of a Redis Cluster says: role, slots, version, flags, and the doctor per node.

Nothing is replicated that reminderd depends on per node: ``notify-keyspace-events``, the
eviction policy and persistence are each node's own config, and a failover promotes a
replica with whatever its config file says. So the doctor runs on every node, and the
clocks are compared: due times are read from the clock of the node that holds the shard,
and nodes whose clocks differ by more than ``SKEW_WARN_MS`` fire the same due time apart.
Reads only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from reminderd.config.cluster import split_cluster_node
from reminderd.storage.nodes import Member, Shard
from reminderd.storage.server import config_value, merge_flags, node_findings

SKEW_WARN_MS = 50.0
Connect = Callable[[tuple[str, int]], aioredis.Redis]


@dataclass(slots=True)
class NodeFacts:
    """One node as it answers for itself (or why it did not)."""

    address: str
    role: str  # master | replica
    primary: str | None = None  # a replica's primary (address)
    slots: str = ""  # a primary's ranges, ``0-5460``
    version: str = "?"
    flags: str | None = None  # None: CONFIG refused or the node did not answer
    flags_ok: bool | None = None
    offset_ms: float | None = None  # its clock minus ours, at the middle of the round trip
    link: str | None = None  # a replica's master_link_status
    findings: list[str] = field(default_factory=list)
    error: str | None = None


def _version(info: dict[str, object]) -> str:
    if str(info.get("server_name", "")).lower() == "valkey":
        return f"Valkey {info.get('valkey_version', '?')}"
    return f"Redis {info.get('redis_version', '?')}"


async def _ask(client: aioredis.Redis, facts: NodeFacts, required: str) -> None:
    before = time.time()
    sec, usec = await client.time()
    after = time.time()
    facts.offset_ms = (int(sec) + int(usec) / 1e6 - (before + after) / 2) * 1000
    info = await client.info()
    facts.version = _version(info)
    facts.link = str(info["master_link_status"]) if "master_link_status" in info else None
    facts.flags = await config_value(client, "notify-keyspace-events")
    facts.flags_ok = None if facts.flags is None else merge_flags(facts.flags, required) == facts.flags
    facts.findings = await node_findings(client, info)
    if facts.role == "master" and facts.flags_ok is False:
        facts.findings.append(
            f"notify-keyspace-events is {facts.flags!r}, reminderd needs {required!r}: "
            "this node's keys fire from the sweep alone"
        )


async def node_facts(connect: Connect, member: Member, required: str, shard: Shard) -> NodeFacts:
    """Ask the node ``member`` of ``shard``; its failure is a fact too."""
    is_primary = member.node_id == shard.primary.node_id
    facts = NodeFacts(
        member.address,
        "master" if is_primary else "replica",
        primary=None if is_primary else shard.primary.address,
        slots=shard.slot_text() if is_primary else "",
    )
    client = connect(split_cluster_node(member.address))
    try:
        await _ask(client, facts, required)
    except (RedisError, OSError) as exc:
        facts.error = str(exc) or type(exc).__name__
    finally:
        await client.aclose()
    return facts


async def cluster_facts(connect: Connect, shards: Sequence[Shard], required: str) -> list[NodeFacts]:
    """Every node of ``shards``, primaries first in slot order, each followed by its replicas."""
    asks = [
        node_facts(connect, member, required, shard)
        for shard in shards
        for member in (shard.primary, *shard.replicas)
    ]
    return list(await asyncio.gather(*asks))


def cluster_findings(nodes: Sequence[NodeFacts]) -> list[str]:
    """The doctor per node (prefixed by its address), replicas not linked, and clock skew."""
    found = []
    for node in nodes:
        if node.error is not None:
            found.append(f"{node.address}: not answering: {node.error}")
            continue
        found += [f"{node.address}: {line}" for line in node.findings]
        if node.role == "replica" and node.link not in (None, "up"):
            found.append(f"{node.address}: replica link to {node.primary} is {node.link}")
    offsets = [n.offset_ms for n in nodes if n.offset_ms is not None]
    if len(offsets) > 1 and max(offsets) - min(offsets) > SKEW_WARN_MS:
        found.append(
            f"the node clocks differ by {max(offsets) - min(offsets):.0f} ms (over {SKEW_WARN_MS:.0f} ms): "
            "due times are read from each shard's node; run NTP on every node"
        )
    return found
