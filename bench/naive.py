"""The seed design: ``SET key 1 PXAT due`` and a subscriber on expired events.

No index and no lock: an event that Redis emits late, or while nobody listens, is
the only trace of a reminder. The subscriber's "work" is recording the fire.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import redis.asyncio as aioredis

from bench.model import Fire
from bench.system import Item, WorkerSystem, write_raw
from bench.worker import mark_ready, worker_main

CHANNEL = "__keyevent@0__:expired"


class NaiveSystem(WorkerSystem):
    """One subscriber process; producers write plain expiring keys."""

    name = "naive-sub"
    patience_s = 15.0  # expired events do not come back; waiting longer changes nothing
    reports_settle = False  # done = the subscriber process exited, which is no work of its own
    module = "bench.naive"

    async def schedule(self, items: Sequence[Item], *, raw: bool = False) -> None:
        """Pipelined ``SET key 1 PXAT due``: raw keys are this design's only way in."""
        await write_raw(self.client, items)

    async def done(self) -> bool:
        """The subscriber exits once it has seen every key."""
        return self.group.all_exited()


async def subscribe_loop(client: aioredis.Redis, expect: int, fires: list[Fire], out: Path) -> None:
    """Record each expired event as a fire until ``expect`` distinct keys were seen."""
    pubsub = client.pubsub()
    await pubsub.subscribe(CHANNEL)
    while (await pubsub.get_message(timeout=5.0)) is None:
        pass  # the subscribe confirmation
    mark_ready(out)
    seen: set[str] = set()
    try:
        while len(seen) < expect:
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
            if msg is not None:
                fires.append((msg["data"], time.time() * 1000))
                seen.add(msg["data"])
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]


def main() -> None:
    """Worker entry point."""
    import sys

    out = Path(sys.argv[sys.argv.index("--out") + 1])
    worker_main(lambda client, expect, fires: subscribe_loop(client, expect, fires, out))


if __name__ == "__main__":
    main()
