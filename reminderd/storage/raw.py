"""Raw trigger keys (a producer's plain ``SET ... EX``): finding them, adopting them, forgetting them.

The producer owns a raw key and its TTL stays the truth: adoption indexes the key at its
own expiry and follows it when the producer moves it; a key its producer deletes cancels
its reminder (``forget``). Claims check the key again before firing (``prelude.lua``).
On a Cluster layout the key is read on its own node first (``Shards.peek``) and the shard's
script decides on that state; adoption writes the shard idempotently, so reading the key
again later (an event and a scan of one key) changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis

from reminderd.storage.records import Adoption
from reminderd.storage.scripts import Scripts
from reminderd.storage.shards import Shards


class RawKeys:
    """The raw-key scripts of one namespace, over its shards (no I/O until called)."""

    def __init__(self, redis: aioredis.Redis, shards: Shards, dead_maxlen: int) -> None:
        self._redis = redis
        self._shards = shards
        self._dead_maxlen = dead_maxlen

    async def adopt(self, keys: Sequence[str], *, payload_max_bytes: int) -> Adoption:
        """Adopt live raw keys or follow their moved expiry; a value above ``payload_max_bytes``
        is dead-lettered instead."""
        if not keys:
            return Adoption(0, 0, 0, ())
        state = await self._shards.peek(keys, values=True)

        async def one(run: Scripts, idx: list[int]) -> Adoption:
            mine = [keys[i] for i in idx]
            outside = None if state is None else {k: state[k] for k in mine}
            reply, _ = await run.call(
                "adopt", args=[payload_max_bytes, self._dead_maxlen, *mine], outside=outside
            )
            adopted, known, other, oversized, moved = reply
            if state is not None:  # dead-lettered: the key goes unless its producer re-set it
                await self._shards.triggers.delete_if([(str(k), int(state[k][0])) for k in oversized])
            return Adoption(int(adopted), int(known), int(other), tuple(oversized), int(moved))

        found = [a for _, a in await self._shards.each(keys, one)]
        return Adoption(
            sum(a.adopted for a in found),
            sum(a.known for a in found),
            sum(a.other for a in found),
            tuple(k for a in found for k in a.oversized),
            sum(a.moved for a in found),
        )

    async def forget(self, keys: Sequence[str]) -> list[str]:
        """Cancel the raw reminders of ``keys`` (del events) whose keys are really gone; those cancelled."""
        if not keys:
            return []
        state = await self._shards.peek(keys)

        async def one(run: Scripts, idx: list[int]) -> list[str]:
            mine = [keys[i] for i in idx]
            outside = None if state is None else {k: state[k] for k in mine}
            reply, _ = await run.call("forget", args=mine, outside=outside)
            return [str(k) for k in reply]

        return [k for _, got in await self._shards.each(keys, one) for k in got]

    async def scan(self, cursor: int, pattern: str, count: int) -> tuple[int, list[str]]:
        """One SCAN step over string keys matching ``pattern`` (raw trigger keys to adopt)."""
        cursor, keys = await self._redis.scan(cursor, match=pattern, count=count, _type="string")
        return int(cursor), [str(k) for k in keys]
