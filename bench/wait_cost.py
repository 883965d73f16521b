"""What ``redis.wait_replicas: 1`` costs the store on a burst: ``python -m bench.wait_cost``.

A private primary and one replica on loopback; the same burst (``COUNT`` one-shots due now)
claimed in batches (``BATCH``, the first argument) and completed, by the store alone (no
processors, no HTTP), once without and once with ``WAIT 1`` after each claim and finish,
back to back. Prints the time per claim+finish pair and the occurrences per second of each.
"""

from __future__ import annotations

import asyncio
import sys
import time

import redis.asyncio as aioredis

from reminderd.core.schedules import Once
from reminderd.storage.durability import Durability
from reminderd.storage.names import Names
from reminderd.storage.store import Completion, ScheduleRequest, Store
from tests.redis_server import RedisServer

COUNT, WINDOW_MS = 20_000, 10_000
BATCH = int(sys.argv[1]) if len(sys.argv) > 1 else 100  # occurrences per claim (first argument)


async def burst(url: str, durability: Durability | None, namespace: str) -> tuple[float, int]:
    """Seconds to claim and complete ``COUNT`` due one-shots in batches of ``BATCH``; rounds."""
    client = aioredis.Redis.from_url(url, decode_responses=True)
    store = Store(client, Names(namespace), durability)
    now = await store.now_ms()
    due = now - 1
    await store.schedule_many(ScheduleRequest(f"send_message-{i}-b", due, Once(due)) for i in range(COUNT))
    started, rounds = time.perf_counter(), 0
    while claims := (await store.claim_due("A", limit=BATCH, lease_ms=60_000)).claims:
        done = [Completion(c.member, c.occurrence, None) for c in claims]
        await store.complete_many("A", done, fired_window_ms=WINDOW_MS)
        rounds += 1
    took_s = time.perf_counter() - started
    await client.aclose()
    return took_s, rounds


async def main() -> None:
    """Start the two servers, run the burst without and with WAIT, print the figures."""
    primary = RedisServer(notify=None).start()
    replica = RedisServer(notify=None).start("--replicaof", "127.0.0.1", str(primary.port))
    try:
        while replica.client().info("replication").get("master_link_status") != "up":
            await asyncio.sleep(0.05)
        for label, durability in (("off", None), ("wait_replicas=1", Durability(1, 100))):
            took_s, rounds = await burst(primary.url, durability, f"b{label}")
            print(
                f"{label:>16}: {COUNT} in {took_s:.2f}s = {COUNT / took_s:,.0f}/s, "
                f"{took_s / rounds * 1000:.2f} ms per claim+finish of {BATCH}"
                + (f", short {durability.short}" if durability else "")
            )
    finally:
        replica.close()
        primary.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
