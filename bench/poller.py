"""The floor: one sorted set scored by due time and a loop that pops what is due.

``ZRANGEBYSCORE -inf now LIMIT 0 1000`` then ``ZREM`` of that batch, no per-item work;
when nothing is due it sleeps until the earliest score (at most 100 ms). This is what a
Python process costs before it does anything per reminder.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import redis.asyncio as aioredis

from bench.model import Fire
from bench.system import Item, WorkerSystem
from bench.worker import mark_ready, worker_main

INDEX = "poller:due"
BATCH = 1000
CHUNK = 1000
MAX_SLEEP_S = 0.1


class PollerSystem(WorkerSystem):
    """One poller process over one sorted set."""

    name = "bare-poller"
    patience_s = 120.0
    reports_settle = True
    module = "bench.poller"

    async def schedule(self, items: Sequence[Item], *, raw: bool = False) -> None:
        """Pipelined ``ZADD`` in chunks; a bare sorted set has no raw-key path."""
        if raw:
            raise ValueError("the bare poller has no raw-key path")
        for i in range(0, len(items), CHUNK):
            await self.client.zadd(INDEX, dict(items[i : i + CHUNK]))

    async def done(self) -> bool:
        """Everything was popped: the sorted set is empty (the worker then exits by itself)."""
        return int(await self.client.zcard(INDEX)) == 0


async def poll_loop(client: aioredis.Redis, expect: int, fires: list[Fire], out: Path) -> None:
    """Pop due members in batches until ``expect`` were popped."""
    await client.ping()
    mark_ready(out)
    popped = 0
    while popped < expect:
        now = time.time() * 1000
        batch: list[str] = await client.zrangebyscore(INDEX, "-inf", now, start=0, num=BATCH)  # type: ignore[assignment]
        if batch:
            popped += await client.zrem(INDEX, *batch)
            at = time.time() * 1000
            fires.extend((m, at) for m in batch)
            continue
        head: list[tuple[str, float]] = await client.zrange(INDEX, 0, 0, withscores=True)  # type: ignore[assignment]
        delay_s = MAX_SLEEP_S if not head else (head[0][1] - time.time() * 1000) / 1000
        await asyncio.sleep(min(MAX_SLEEP_S, max(0.0, delay_s)))


def main() -> None:
    """Worker entry point."""
    import sys

    out = Path(sys.argv[sys.argv.index("--out") + 1])
    worker_main(lambda client, expect, fires: poll_loop(client, expect, fires, out))


if __name__ == "__main__":
    main()
