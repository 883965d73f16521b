"""The store's reads: reminders, index pages, counts, Redis's clock (no script, no write).

A plain one-shot has no record while it waits (``prelude.lua``: ``is_plain``): its index
score is its due time, so reading a reminder reads its record and its score together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis

from reminderd.models import Reminder
from reminderd.storage.names import Names
from reminderd.storage.records import reminder_from


class Reads:
    """The reading half of ``Store``: no I/O until called."""

    redis: aioredis.Redis
    names: Names

    async def get(self, key: str) -> Reminder | None:
        """The stored reminder for ``key`` (rule, user and type are filled by the caller)."""
        (found,) = await self.get_many([key])
        return found

    async def get_many(self, members: Sequence[str]) -> list[Reminder | None]:
        """Reminders of many index members in one round trip: each record, or for a
        record-less plain one-shot its index score (``records.reminder_from``)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for m in members:
                pipe.hgetall(self.names.record(m))
                pipe.zscore(self.names.due, m)
            rows: list[Any] = await pipe.execute()
        return [reminder_from(m, rows[2 * i], rows[2 * i + 1]) for i, m in enumerate(members)]

    async def exists(self, key: str) -> bool:
        """Whether a reminder (recorded or record-less) or a raw key of name ``key`` exists."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(self.names.record(key), key)
            pipe.zscore(self.names.due, key)
            present, score = await pipe.execute()
        return bool(present) or score is not None

    async def index_page(self, start: int, count: int) -> list[tuple[str, int]]:
        """Index entries by rank ``start`` .. ``start + count - 1``, earliest due first.

        Paging by rank costs O(log N) per page; ``ZRANGEBYSCORE ... LIMIT offset`` would
        walk ``offset`` entries each time, quadratic over a large index.
        """
        rows: list[tuple[str, float]] = await self.redis.zrange(
            self.names.due, start, start + count - 1, withscores=True
        )  # type: ignore[assignment]
        return [(m, int(s)) for m, s in rows]

    async def rank_after(self, ms: int) -> int:
        """The rank of the first index entry due after ``ms``."""
        return int(await self.redis.zcount(self.names.due, "-inf", ms))

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
            pipe.zcard(self.names.due)
            pipe.zcount(self.names.due, "-inf", now_ms)
            total, due = await pipe.execute()
        return int(total), int(due)

    async def due_between(self, from_ms: int, until_ms: int) -> int:
        """How many index entries come due in [from_ms, until_ms]."""
        return int(await self.redis.zcount(self.names.due, from_ms, until_ms))

    async def next_due(self) -> tuple[str, int] | None:
        """The earliest index entry."""
        rows: list[tuple[str, float]] = await self.redis.zrange(self.names.due, 0, 0, withscores=True)  # type: ignore[assignment]
        return (rows[0][0], int(rows[0][1])) if rows else None

    async def now_ms(self) -> int:
        """Redis's clock in epoch milliseconds."""
        sec, usec = await self.redis.time()
        return int(sec) * 1000 + int(usec) // 1000
