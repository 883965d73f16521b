"""Where the store's keys live: one shard (a single Redis) or N shards under hash tags (Cluster).

A shard is one due index with everything its scripts touch (records, locks, fired markers,
aux sets, stats, dead letters, its epoch), all under one hash tag so every script stays in
one slot. The tags are chosen so that the N shards' slots spread evenly over the slot range
(``shard_tags``): on a cluster of M primaries each holds about N / M shards. A member
belongs to shard ``slot(key_of(member)) % N``: stable, and computed by any client.

``inline_triggers``: the scripts write and delete trigger keys themselves, which needs the
trigger key in the scripts' slot: true of one Redis only. On Cluster the store does the
trigger-key side with single-key commands around the scripts (``storage/triggers.py``).

The shard count is written into Redis at first start (``<ns>:shards``) and checked on every
start (``check_shards``): members are placed by it, so a different N would lose every
reminder of a moved member.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from functools import cache

import redis.asyncio as aioredis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from reminderd.errors import ConfigError
from reminderd.storage.names import Names
from reminderd.storage.records import key_of

CLUSTER_SHARDS = 16  # the default N on Cluster: 10 M reminders are 625 k a shard
_TAG_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_TAG_MAX_LEN = 3  # 46,656 candidates: a slot within a few of any target


def _slot(text: str) -> int:
    return int(key_slot(text.encode()))


@cache
def _candidates() -> tuple[tuple[str, int], ...]:
    """Every short tag with its slot, shortest first, then in alphabet order."""
    tags = (
        "".join(p) for n in range(1, _TAG_MAX_LEN + 1) for p in itertools.product(_TAG_ALPHABET, repeat=n)
    )
    return tuple((t, _slot(t)) for t in tags)


@cache
def shard_tags(shards: int) -> tuple[str, ...]:
    """The hash tag of each of ``shards`` shards: for shard i the first short tag whose slot is
    nearest the middle of the i-th of N equal slot ranges, so the shards spread evenly."""
    step = REDIS_CLUSTER_HASH_SLOTS / shards
    tags: list[str] = []
    for i in range(shards):
        target = i * step + step / 2
        tag, _ = min(_candidates(), key=lambda c: abs(c[1] - target))  # min keeps the first of ties
        tags.append(tag)
    return tuple(tags)


@dataclass(frozen=True, slots=True)
class Layout:
    """The key layout of one namespace: how many shards, and who writes trigger keys."""

    namespace: str = "reminderd"
    shards: int = 1
    inline_triggers: bool = True
    names: Names = field(init=False)  # daemon-wide keys (daemons, heartbeats, rates, wake, ...)
    shard_names: tuple[Names, ...] = field(init=False)

    def __post_init__(self) -> None:
        if self.shards < 1:
            raise ConfigError(f"redis.shards must be at least 1, got {self.shards}")
        if self.inline_triggers and self.shards != 1:
            raise ConfigError("trigger keys are written inside the scripts only with one shard")
        object.__setattr__(self, "names", Names(self.namespace))
        if self.shards == 1 and self.inline_triggers:
            shard_names: tuple[Names, ...] = (self.names,)  # no tag: today's key names
        else:
            shard_names = tuple(Names(self.namespace, tag) for tag in shard_tags(self.shards))
        object.__setattr__(self, "shard_names", shard_names)

    @classmethod
    def single(cls, namespace: str = "reminderd") -> Layout:
        """One Redis (standalone or Sentinel): one shard, trigger keys written by the scripts."""
        return cls(namespace, 1, True)

    @classmethod
    def cluster(cls, namespace: str = "reminderd", shards: int = CLUSTER_SHARDS) -> Layout:
        """Redis Cluster: ``shards`` tagged shards, trigger keys written outside the scripts."""
        return cls(namespace, shards, False)

    def shard_of(self, member: str) -> int:
        """The shard of index member ``member`` (an auxiliary one goes with its trigger key)."""
        if self.shards == 1:
            return 0
        return _slot(key_of(member)) % self.shards

    def names_of(self, member: str) -> Names:
        """The shard names of ``member``."""
        return self.shard_names[self.shard_of(member)]


async def check_shards(client: aioredis.Redis, layout: Layout) -> int:
    """Write the shard count at first start, refuse a different one after; the count stored.

    A data set written before shard counts were stored (its single due index exists) counts
    as one shard, so it is never read with a sharded layout that would not find it.
    """
    key = layout.names.shards
    if not await client.exists(key) and layout.shards != 1 and await client.exists(layout.names.due):
        stored: int | None = 1
    else:
        await client.set(key, layout.shards, nx=True)
        got = await client.get(key)
        stored = int(got) if got is not None else None
    if stored != layout.shards:
        raise ConfigError(
            f"namespace {layout.namespace!r} holds {stored} shard(s) in Redis ({key}), "
            f"but this daemon is configured for {layout.shards}: a different count would place "
            "every reminder in another shard; keep the stored count or migrate the data"
        )
    return stored
