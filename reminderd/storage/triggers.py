"""The trigger-key side of a Cluster layout: single-key commands around the shard scripts.

A trigger key (``send_message-42-daily``) hashes to any slot, so no shard script may name
it (``storage/layout.py``). The store does its part with commands of one key each, grouped
in one pipeline per call (a cluster pipeline groups them by node), ordered so that the
index stays the truth:

- ``arm`` after a script wrote the shard: ``SET key 1 PXAT due`` (a due time already past:
  ``DEL``). A crash between the two leaves an indexed reminder without its key, which the
  timer fires from the index and ``repair`` re-creates.
- ``peek`` before a script that must know a key (claims of expired events, adoption,
  finish of a raw one-shot, forget, only-if-absent): its expiry and value, read on the
  key's own node; the script decides on that state (``prelude.lua``: ``OUTSIDE``).
- ``delete_if`` after a claim: the key goes only if its expiry is still the claimed due
  time, so a key its producer re-set meanwhile is never deleted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import redis.asyncio as aioredis

# One key: {expiry ms or -1 (none) or -2 (gone)} and, when ARGV[1] is '1' and it is a live
# string, its value. PEXPIRETIME where Redis has it (7.0), else TIME + PTTL.
_PEEK = """
local k = KEYS[1]
local at = redis.pcall('PEXPIRETIME', k)
if type(at) ~= 'number' then
  at = redis.call('PTTL', k)
  if at >= 0 then
    local t = redis.call('TIME')
    at = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + at
  end
end
if at == -2 or ARGV[1] ~= '1' or redis.call('TYPE', k)['ok'] ~= 'string' then return {at} end
return {at, redis.call('GET', k)}
"""

# Delete KEYS[1] only while its expiry is ARGV[1] (the claimed due time): 1 if deleted.
_DELETE_IF = """
if redis.call('PEXPIRETIME', KEYS[1]) == tonumber(ARGV[1]) then return redis.call('DEL', KEYS[1]) end
return 0
"""

State = list[int | str]  # [expiry] or [expiry, value]: the JSON a script reads as OUTSIDE[key]


class TriggerKeys:
    """Trigger keys read and written one key a command (no I/O until called)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def _each(self, script: str, rows: Sequence[tuple[str, str | int]]) -> list[Any]:
        """``script`` once per (key, argument), in one pipeline. EVAL, not EVALSHA: a cluster
        pipeline does not load a script a node lacks, and Redis caches these few lines."""
        if not rows:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, arg in rows:
                pipe.eval(script, 1, key, arg)
            return list(await pipe.execute())

    async def peek(self, keys: Iterable[str], *, values: bool = False) -> dict[str, State]:
        """The state of each key (its value only with ``values``), for a script's ``OUTSIDE``."""
        wanted = sorted(set(keys))
        rows = await self._each(_PEEK, [(k, "1" if values else "0") for k in wanted])
        return {k: [int(r[0]), *r[1:]] for k, r in zip(wanted, rows, strict=True)}

    async def arm(self, arms: Sequence[tuple[str, int]]) -> None:
        """Write the keys a script left to arm: ``SET key 1 PXAT due``, or ``DEL`` for due 0."""
        if not arms:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, due in arms:
                if due > 0:
                    pipe.set(key, "1", pxat=due)
                else:
                    pipe.delete(key)
            await pipe.execute()

    async def delete_if(self, expiries: Sequence[tuple[str, int]]) -> int:
        """Delete each key whose expiry is still the given one; how many were deleted."""
        return sum(int(x) for x in await self._each(_DELETE_IF, expiries))

    async def delete(self, keys: Sequence[str]) -> int:
        """Delete keys outright (a cancel: the shard's tombstone is written already)."""
        if not keys:
            return 0
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.delete(key)
            return sum(int(x) for x in await pipe.execute())
