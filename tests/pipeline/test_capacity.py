"""Capacity: what may be claimed shrinks with the HTTP requests waiting for a connection."""

from __future__ import annotations

import asyncio
import importlib

import redis.asyncio as aioredis

from reminderd.config import load_config_text
from reminderd.pipeline.capacity import Capacity
from reminderd.pipeline.runtime import Context, Runtime
from reminderd.processors.base import HttpClient
from reminderd.storage.names import Names
from reminderd.storage.store import Store
from reminderd.telemetry.metrics import Metrics
from tests.http_receiver import HttpReceiver, Reply
from tests.serving import poll_async


async def test_requests_waiting_for_a_connection_slot_hold_claiming_back(aredis: aioredis.Redis) -> None:
    """Three requests through one slot: the two waiting take two slots off what may be claimed."""
    settings = load_config_text("daemon:\n  concurrency: 10\n")
    # Loaded up front, as building a webhook or SMS processor does at start-up: its import at
    # the first request would stall the loop for ~0.1 s, and the loop-lag throttle would
    # (rightly) take every slot off what may be claimed.
    importlib.import_module("aiohttp")
    with HttpReceiver(default=Reply(200, delay_s=0.5)) as receiver:
        async with HttpClient(1) as http:
            runtime = Runtime(settings, {}, {})
            capacity = Capacity(Context(Store(aredis, Names("t")), runtime, Metrics(), "i", http))
            assert capacity.free() == 10
            calls = [
                asyncio.ensure_future(http.request("GET", receiver.url("/"), where="t")) for _ in range(3)
            ]
            await poll_async(lambda: [http.queued], lambda seen: seen == [2], timeout_s=5)
            assert capacity.free() == 8
            await asyncio.gather(*calls)
            assert capacity.free() == 10
