"""Token buckets in Redis, shared by every daemon instance that sends through one account.

One Lua script (``scripts/take_token.lua``) refills and takes a token atomically, on
Redis's clock (``TIME``), so instances on hosts with skewed clocks still share one rate.
A caller that finds the bucket empty *reserves* the next free token (the token count goes
negative) and sleeps until its turn: one round trip per send, first come first served, and
the measured rate is the configured one. A reservation is only made when the wait is at
most ``max_wait_ms``; a longer queue means the caller should hand the work back (retry
later) instead of holding a concurrency slot that other rules need.

The bucket hash (``Names.rate``) holds ``tokens`` (may be negative) and ``ts_ms`` (Redis
time of the last update); it expires once it would be full again, since an absent
bucket is a full one.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from reminderd.errors import Deferred
from reminderd.storage.names import Names
from reminderd.storage.scripts import Scripts


class TokenBucket:
    """Client of the shared buckets of one namespace (no I/O until the first call)."""

    def __init__(self, redis: aioredis.Redis, names: Names) -> None:
        self._names = names
        self._run = Scripts(redis, names)

    async def acquire(
        self, bucket: str, rate_per_s: float, burst: int, *, max_wait_ms: int | None = None
    ) -> int:
        """Reserve one token of ``bucket`` and return how many ms to wait before using it.

        With ``max_wait_ms``, a wait longer than that reserves nothing; the returned wait
        (then greater than ``max_wait_ms``) says when to ask again.
        """
        limit = -1 if max_wait_ms is None else max_wait_ms
        args: list[str | int] = [repr(float(rate_per_s)), burst, limit]
        return int(await self._run.alone("take_token", self._names.rate(bucket), args))

    async def take(self, bucket: str, rate_per_s: float, burst: int, *, max_wait_ms: int) -> int:
        """Wait for a token in this coroutine only; ``Deferred`` when the queue is too long.

        Returns the ms waited. Other coroutines keep running while this one sleeps.
        """
        wait_ms = await self.acquire(bucket, rate_per_s, burst, max_wait_ms=max_wait_ms)
        if wait_ms > max_wait_ms:
            raise Deferred(
                f"rate limit {bucket!r}: next free slot in {wait_ms} ms", retry_after_s=wait_ms / 1000
            )
        if wait_ms:
            await asyncio.sleep(wait_ms / 1000)
        return wait_ms
