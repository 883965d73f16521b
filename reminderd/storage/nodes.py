"""The members of a Redis Cluster as ``CLUSTER SHARDS`` reports them, and per-node reads.

On Cluster, keyspace events, ``SCAN``, ``CONFIG`` and ``INFO`` are each one node's: a key's
``expired`` event is published only by the primary that owns its slot, ``CONFIG SET`` is not
replicated (a promoted replica starts with the flags its own config file gave it), and
``SCAN`` walks one node's keys. The topology watcher (``reminderd.pipeline.cluster_watch``)
reads the shards here and runs one subscriber and one adoption scan per primary.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.crc import key_slot
from redis.exceptions import RedisError

SlotRange = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Member:
    """One node of a shard."""

    node_id: str
    address: str  # host:port, the address clients reach it at
    role: str  # master | replica
    health: str  # online | failed | loading
    offset: int  # replication offset


@dataclass(frozen=True, slots=True)
class Shard:
    """A primary, its slot ranges and its replicas."""

    primary: Member
    slots: tuple[SlotRange, ...]
    replicas: tuple[Member, ...] = field(default=())

    def owns(self, slot: int) -> bool:
        """Whether ``slot`` is one of this shard's."""
        return any(low <= slot <= high for low, high in self.slots)

    def slot_text(self) -> str:
        """``0-5460,5461-5470``: the ranges as the status shows them."""
        return ",".join(f"{low}-{high}" if low != high else str(low) for low, high in self.slots)


def _pairs(flat: Sequence[Any] | dict[str, Any]) -> dict[str, Any]:
    """A reply map: redis-py gives a dict, or (RESP2, unparsed) a flat list of pairs."""
    if isinstance(flat, dict):
        return {str(k): v for k, v in flat.items()}
    return {str(flat[i]): flat[i + 1] for i in range(0, len(flat) - 1, 2)}


def _member(raw: Sequence[Any] | dict[str, Any]) -> Member:
    fields = _pairs(raw)
    host = str(fields.get("endpoint") or fields.get("ip") or "?")
    if host in ("", "?"):
        host = str(fields.get("ip", "?"))
    port = fields.get("port") or fields.get("tls-port") or 0
    return Member(
        str(fields.get("id", "")),
        f"{host}:{port}",
        str(fields.get("role", "?")),
        str(fields.get("health", "?")),
        int(fields.get("replication-offset", 0) or 0),
    )


def parse_shards(reply: Sequence[Any]) -> list[Shard]:
    """The raw ``CLUSTER SHARDS`` reply as shards with an online primary owning slots.

    A shard whose primary is ``failed`` (killed, not yet replaced) or owns no slot (a node
    just added) is left out: nothing can be subscribed to there yet.
    """
    shards = []
    for raw in reply:
        fields = _pairs(raw)
        flat = [int(s) for s in fields.get("slots") or []]
        ranges = tuple((flat[i], flat[i + 1]) for i in range(0, len(flat) - 1, 2))
        members = [_member(m) for m in fields.get("nodes") or []]
        primaries = [m for m in members if m.role == "master" and m.health == "online"]
        if not primaries or not ranges:
            continue
        replicas = tuple(m for m in members if m.role != "master")
        shards.append(Shard(primaries[0], ranges, replicas))
    return sorted(shards, key=lambda s: s.slots[0])


async def read_shards(client: aioredis.Redis) -> list[Shard]:
    """``CLUSTER SHARDS`` as ``client``'s node sees it (Redis 7.0+, Valkey 7.2+)."""
    return parse_shards(await client.execute_command("CLUSTER", "SHARDS"))  # type: ignore[no-untyped-call]


async def shards_from(
    connect: Callable[[tuple[str, int]], aioredis.Redis], addresses: Sequence[tuple[str, int]]
) -> list[Shard]:
    """``CLUSTER SHARDS`` from the first of ``addresses`` that answers (each asked once)."""
    error: BaseException = RedisError("no cluster node configured")
    for address in addresses:
        client = connect(address)
        try:
            return await read_shards(client)
        except (RedisError, OSError) as exc:
            error = exc
        finally:
            await client.aclose()
    raise error


async def scan_node(client: aioredis.Redis, cursor: int, pattern: str, count: int) -> tuple[int, list[str]]:
    """One ``SCAN`` step over the string keys of ``client``'s node only."""
    cursor, keys = await client.scan(cursor, match=pattern, count=count, _type="string")
    return int(cursor), [str(k) for k in keys]


def key_in_slots(base: str, slots: Sequence[SlotRange]) -> str:
    """``base{tag}``, with the first tag that hashes ``base{tag}`` to a slot in ``slots``.

    A canary must expire on the node whose events are being proved: the one that owns its
    slot. Short tags cover every slot within a few thousand tries.
    """
    for n in range(1_000_000):
        key = f"{base}{{{n:x}}}"
        slot = key_slot(key.encode())
        if any(low <= slot <= high for low, high in slots):
            return key
    raise ValueError(f"no key for the slots {slots}")  # pragma: no cover - slots is never empty
