"""Raw trigger keys (a producer's plain ``SET ... EX``): finding them, adopting them, forgetting them.

The producer owns a raw key and its TTL stays the truth: adoption indexes the key at its
own expiry and follows it when the producer moves it; a key its producer deletes cancels
its reminder (``forget``). Claims check the key again before firing (``prelude.lua``).
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis

from reminderd.storage.records import Adoption
from reminderd.storage.scripts import Scripts


class RawKeys:
    """The raw-key scripts of one namespace (no I/O until called)."""

    def __init__(self, redis: aioredis.Redis, run: Scripts, dead_maxlen: int) -> None:
        self._redis = redis
        self._run = run
        self._dead_maxlen = dead_maxlen

    async def adopt(self, keys: Sequence[str], *, payload_max_bytes: int) -> Adoption:
        """Adopt live raw keys or follow their moved expiry; a value above ``payload_max_bytes``
        is dead-lettered instead."""
        adopted, known, other, oversized, moved = await self._run(
            "adopt", args=[payload_max_bytes, self._dead_maxlen, *keys]
        )
        return Adoption(int(adopted), int(known), int(other), tuple(oversized), int(moved))

    async def forget(self, keys: Sequence[str]) -> list[str]:
        """Cancel the raw reminders of ``keys`` (del events) whose keys are really gone; those cancelled."""
        return [str(k) for k in await self._run("forget", args=list(keys))]

    async def scan(self, cursor: int, pattern: str, count: int) -> tuple[int, list[str]]:
        """One SCAN step over string keys matching ``pattern`` (raw trigger keys to adopt)."""
        cursor, keys = await self._redis.scan(cursor, match=pattern, count=count, _type="string")
        return int(cursor), [str(k) for k in keys]
