"""Shared shell of the baseline worker processes: args, SIGTERM, ready marker, output."""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import redis.asyncio as aioredis

from bench.model import Fire, write_fires

Loop = Callable[[aioredis.Redis, int, list[Fire]], Awaitable[None]]


async def run_worker(loop_fn: Loop, url: str, expect: int, out: Path) -> None:
    """Run ``loop_fn`` until it has ``expect`` fires or SIGTERM comes; then write them."""
    client = aioredis.Redis.from_url(url, decode_responses=True)
    fires: list[Fire] = []
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    work = asyncio.ensure_future(loop_fn(client, expect, fires))
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait([work, stopper], return_when=asyncio.FIRST_COMPLETED)
    for task in (work, stopper):
        task.cancel()
    await asyncio.gather(work, stopper, return_exceptions=True)
    write_fires(out, fires)
    await client.aclose()


def worker_main(loop_fn: Loop) -> None:
    """``python -m bench.<worker> --url URL --expect N --out FILE``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    ns = parser.parse_args()
    asyncio.run(run_worker(loop_fn, ns.url, ns.expect, ns.out))


def mark_ready(out: Path) -> None:
    """Tell the orchestrator this worker is listening."""
    out.with_suffix(".ready").touch()
