"""A topology watcher on a test cluster, built the way the daemon builds it, for the tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from reminderd.config import load_config_text
from reminderd.config.model import Settings
from reminderd.pipeline.cluster_watch import NodeHandle, TopologyWatcher
from reminderd.pipeline.hints import Hints
from reminderd.pipeline.runtime import Context, Runtime
from reminderd.storage.cluster import node_client
from reminderd.storage.names import Names
from reminderd.storage.store import Store
from reminderd.telemetry.metrics import Metrics
from tests.cluster_topology import ClusterTopology


def cluster_settings(cluster: ClusterTopology, extra: str = "") -> Settings:
    """A config on ``cluster`` (one seed) with the ``send_message`` rule."""
    return load_config_text(
        f"redis: {{cluster: {{nodes: ['{cluster.nodes[0]}']}}}}\n"
        "processors: {log: {type: log}}\nrules: {send_message: {processors: [log]}}\n" + extra
    )


@dataclass
class Watching:
    """The watcher, its hints, and the gaps it reported (by node address)."""

    watcher: TopologyWatcher
    hints: Hints
    ctx: Context
    gaps: list[str] = field(default_factory=list)

    def node(self, port: int) -> NodeHandle:
        """The handle of the primary on ``port``."""
        return self.watcher.nodes[f"127.0.0.1:{port}"]


@asynccontextmanager
async def watching(cluster: ClusterTopology, extra: str = "") -> AsyncIterator[Watching]:
    """A running watcher on ``cluster``; stopped (every subscriber and node client) at the end."""
    settings = cluster_settings(cluster, extra)
    spec = settings.redis.cluster
    assert spec is not None

    def connect(address: tuple[str, int], subscriber: bool) -> aioredis.Redis:
        return node_client(settings.redis, spec, address, subscriber=subscriber)

    seed = connect(spec.addresses[0], False)
    ctx = Context(Store(seed, Names(settings.namespace)), Runtime(settings, {}, {}), Metrics(), "test-1")
    hints = Hints()
    watcher = TopologyWatcher(ctx, hints, connect, spec.nodes)
    found = Watching(watcher, hints, ctx)

    async def on_gap(handle: NodeHandle) -> None:
        found.gaps.append(handle.address)

    watcher.on_gap = on_gap
    task = asyncio.create_task(watcher.run())
    try:
        assert await watcher.wait_subscribed(10), "the subscribers did not subscribe"
        yield found
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await seed.aclose()


async def until(pred: Callable[[], Awaitable[bool] | bool], timeout_s: float, what: str) -> None:
    """Await ``pred`` (sync or async) until true, or fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = pred()
        if await result if isinstance(result, Awaitable) else result:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} not reached within {timeout_s}s")
