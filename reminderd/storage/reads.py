"""The store's reads: reminders, index pages, counts, Redis's clock (no script, no write).

A plain one-shot has no record while it waits (``prelude.lua``: ``is_plain``): its index
score is its due time, so reading a reminder reads its record and its score together.
Reads about the whole index (pages, counts, the next due, stats) merge the shards'
(``storage/layout.py``); with one shard each is the one command it always was.
"""

from __future__ import annotations

import heapq
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis

from reminderd.models import Reminder
from reminderd.storage.layout import Layout
from reminderd.storage.names import Names
from reminderd.storage.records import reminder_from


class Reads:
    """The reading half of ``Store``: no I/O until called."""

    redis: aioredis.Redis
    names: Names
    layout: Layout

    async def _each_shard(self, command: str, *args: Any, **kwargs: Any) -> list[Any]:
        """``command`` on every shard's due index, in one pipeline: the replies in shard order."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for names in self.layout.shard_names:
                getattr(pipe, command)(names.due, *args, **kwargs)
            return list(await pipe.execute())

    async def get(self, key: str) -> Reminder | None:
        """The stored reminder for ``key`` (rule, user and type are filled by the caller)."""
        (found,) = await self.get_many([key])
        return found

    async def get_many(self, members: Sequence[str]) -> list[Reminder | None]:
        """Reminders of many index members in one round trip: each record, or for a
        record-less plain one-shot its index score (``records.reminder_from``)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for m in members:
                names = self.layout.names_of(m)
                pipe.hgetall(names.record(m))
                pipe.zscore(names.due, m)
            rows: list[Any] = await pipe.execute()
        return [reminder_from(m, rows[2 * i], rows[2 * i + 1]) for i, m in enumerate(members)]

    async def exists(self, key: str) -> bool:
        """Whether a reminder (recorded or record-less) or a raw key of name ``key`` exists."""
        names = self.layout.names_of(key)
        async with self.redis.pipeline(transaction=False) as pipe:
            if self.layout.inline_triggers:
                pipe.exists(names.record(key), key)
            else:  # the key in its own slot: one key a command on Cluster
                pipe.exists(names.record(key))
                pipe.exists(key)
            pipe.zscore(names.due, key)
            *present, score = await pipe.execute()
        return any(present) or score is not None

    async def index_page(self, start: int, count: int) -> list[tuple[str, int]]:
        """Index entries by rank ``start`` .. ``start + count - 1``, earliest due first.

        Paging by rank costs O(log N) per page; ``ZRANGEBYSCORE ... LIMIT offset`` would
        walk ``offset`` entries each time, quadratic over a large index. With N shards the
        global ranks are a merge of every shard's first ``start + count`` entries.
        """
        if len(self.layout.shard_names) == 1:
            rows: list[tuple[str, float]] = await self.redis.zrange(
                self.names.due, start, start + count - 1, withscores=True
            )  # type: ignore[assignment]
            return [(m, int(s)) for m, s in rows]
        pages = await self._each_shard("zrange", 0, start + count - 1, withscores=True)
        merged = heapq.merge(*pages, key=lambda row: (row[1], row[0]))
        return [(m, int(s)) for m, s in list(merged)[start : start + count]]

    async def pages_after(self, ms: int, count: int) -> AsyncIterator[list[tuple[str, int]]]:
        """Every index entry due after ``ms``, in pages of ``count`` by rank, shard after shard
        (earliest first within a shard): a walk over a sharded index that costs O(log N) a
        page, where ``index_page``'s global ranks cost a merge of every shard's first ranks."""
        for names in self.layout.shard_names:
            start = int(await self.redis.zcount(names.due, "-inf", ms))
            while True:
                rows: list[tuple[str, float]] = await self.redis.zrange(
                    names.due, start, start + count - 1, withscores=True
                )  # type: ignore[assignment]
                if not rows:
                    break
                start += len(rows)
                yield [(m, int(score)) for m, score in rows]

    async def rank_after(self, ms: int) -> int:
        """The rank of the first index entry due after ``ms``."""
        return sum(int(n) for n in await self._each_shard("zcount", "-inf", ms))

    async def hash_fields(self, wanted: Mapping[str, Sequence[str]]) -> dict[str, dict[str, str]]:
        """Fields of hashes outside the namespace (user lookup hashes) in one round trip.

        ``wanted`` maps a hash to the fields to read; the reply maps it to those present.
        """
        async with self.redis.pipeline(transaction=False) as pipe:
            for key, fields in wanted.items():
                pipe.hmget(key, list(fields))
            rows: list[list[str | None]] = await pipe.execute()
        return {
            key: {f: str(v) for f, v in zip(fields, row, strict=True) if v is not None}
            for (key, fields), row in zip(wanted.items(), rows, strict=True)
        }

    async def counts(self, now_ms: int) -> tuple[int, int]:
        """(scheduled, due now) from the index."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for names in self.layout.shard_names:
                pipe.zcard(names.due)
                pipe.zcount(names.due, "-inf", now_ms)
            rows = await pipe.execute()
        return sum(int(n) for n in rows[0::2]), sum(int(n) for n in rows[1::2])

    async def due_between(self, from_ms: int, until_ms: int) -> int:
        """How many index entries come due in [from_ms, until_ms]."""
        return sum(int(n) for n in await self._each_shard("zcount", from_ms, until_ms))

    async def next_due(self) -> tuple[str, int] | None:
        """The earliest index entry."""
        if len(self.layout.shard_names) == 1:
            rows: list[tuple[str, float]] = await self.redis.zrange(self.names.due, 0, 0, withscores=True)  # type: ignore[assignment]
        else:
            rows = [row for page in await self._each_shard("zrange", 0, 0, withscores=True) for row in page]
        if not rows:
            return None
        member, score = min(rows, key=lambda row: (row[1], row[0]))
        return member, int(score)

    async def stats(self) -> dict[str, int]:
        """The cumulative counters (fired, failed, dead, ...), summed over the shards."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for names in self.layout.shard_names:
                pipe.hgetall(names.stats)
            rows: list[dict[str, str]] = await pipe.execute()
        total: dict[str, int] = {}
        for row in rows:
            for name, n in row.items():
                total[str(name)] = total.get(str(name), 0) + int(n)
        return total

    async def dead_count(self) -> int:
        """How many dead letters the shards hold."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for names in self.layout.shard_names:
                pipe.xlen(names.dead)
            return sum(int(n) for n in await pipe.execute())

    async def now_ms(self) -> int:
        """Redis's clock in epoch milliseconds."""
        sec, usec = await self.redis.time()
        return int(sec) * 1000 + int(usec) // 1000
