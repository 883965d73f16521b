"""The topology watcher: one subscriber per Redis Cluster primary, following failovers and reshards.

Keyspace events are node-local on Cluster: a key's ``expired`` event is published by the
primary that owns its slot, on that node only (not over the cluster bus, not through
sharded pub/sub). redis-py's own cluster notifications re-subscribe only after a connection
error, so a promoted replica or an added node would stay silent. The watcher reads
``CLUSTER SHARDS`` every ``INTERVAL_S`` (and at once after a subscriber lost its
connection), starts a ``Subscriber`` on each new primary and stops those on nodes that were
demoted or removed.

Every subscription after the first topology read is a gap: events may have been lost on
that node. The flags are merged and re-applied there first (``CONFIG SET`` is not
replicated: a promoted replica has its config file's flags, often ``''``), then the timer
is told to sweep at once and ``on_gap`` (the daemon: an adoption scan of that node, since
``SCAN`` walks one node) runs with the node's handle.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from reminderd.config.cluster import split_cluster_node
from reminderd.pipeline.hints import Hints
from reminderd.pipeline.runtime import Context
from reminderd.pipeline.subscriber import Subscriber
from reminderd.storage.nodes import Shard, SlotRange, key_in_slots, read_shards, scan_node, shards_from
from reminderd.storage.server import NotifyState, ensure_notifications, prove_events, required_flags

log = structlog.get_logger("reminderd.pipeline.cluster_watch")
INTERVAL_S = 1.0

# (host, port), subscriber connection or not -> a plain client on that one node
Connect = Callable[[tuple[str, int], bool], aioredis.Redis]


@dataclass(eq=False, slots=True)
class NodeHandle:
    """One primary the watcher subscribes to: its clients, slots, subscriber and flags."""

    address: str
    node_id: str
    slots: tuple[SlotRange, ...]
    command: aioredis.Redis  # CONFIG, SCAN, canaries: this node only
    pubsub: aioredis.Redis
    subscriber: Subscriber
    notify: NotifyState = field(default_factory=NotifyState)
    task: asyncio.Task[None] | None = None

    async def scan(self, cursor: int, pattern: str, count: int) -> tuple[int, list[str]]:
        """One SCAN step over this node's keys (the adoption scan's per-node source)."""
        return await scan_node(self.command, cursor, pattern, count)


NodeGap = Callable[[NodeHandle], Awaitable[None]]


class TopologyWatcher:
    """Keeps a subscriber on every primary of the cluster the seeds belong to."""

    def __init__(self, ctx: Context, hints: Hints, connect: Connect, seeds: Sequence[str]) -> None:
        self.ctx = ctx
        self.hints = hints
        self.connect = connect
        self.seeds = [split_cluster_node(s) for s in seeds]
        self.nodes: dict[str, NodeHandle] = {}
        self.shards: list[Shard] = []
        self.on_gap: NodeGap | None = None  # the daemon's adoption scan of one node
        self.ready = asyncio.Event()  # the first topology read is done, its subscribers started
        self._poke = asyncio.Event()
        self._first = True
        self._gaps: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Follow the topology forever; stop every subscriber when cancelled."""
        try:
            while True:
                try:
                    await self.refresh()
                except (RedisError, OSError, ValueError) as exc:  # ValueError: an address we cannot use
                    log.warning("cluster.topology_unreadable", error=str(exc) or type(exc).__name__)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._poke.wait(), INTERVAL_S)
                self._poke.clear()
        finally:
            await self.close()

    async def refresh(self) -> None:
        """Read the shards; add subscribers on new primaries, drop those on demoted or gone ones."""
        self.shards = await self._read()
        wanted = {s.primary.address: s for s in self.shards}
        for address, handle in list(self.nodes.items()):
            shard = wanted.get(address)
            if shard is None or shard.primary.node_id != handle.node_id:
                await self._drop(handle, "no longer a primary")
            else:
                handle.slots = shard.slots
        for address, shard in wanted.items():
            if address not in self.nodes:
                self._add(shard, gap=not self._first)
        self._first = False
        self.ready.set()
        # The unlabelled gauge is the whole: 1 while every primary's subscriber is subscribed.
        self.ctx.metrics.set_subscriber_connected(bool(self.nodes) and all(self.states_ok()))

    def states_ok(self) -> list[bool]:
        """Whether each primary's subscriber is subscribed now."""
        return [h.subscriber.subscribed.is_set() for h in self.nodes.values()]

    async def _read(self) -> list[Shard]:
        """The shards as the first node that answers sees them: known primaries, then the seeds."""
        for handle in list(self.nodes.values()):
            with contextlib.suppress(RedisError, OSError):
                return await read_shards(handle.command)
        return await shards_from(lambda seed: self.connect(seed, False), self.seeds)

    def _add(self, shard: Shard, *, gap: bool) -> NodeHandle:
        address = split_cluster_node(shard.primary.address)
        pubsub = self.connect(address, True)
        subscriber = Subscriber(pubsub, 0, self.ctx, self.hints)
        handle = NodeHandle(
            shard.primary.address,
            shard.primary.node_id,
            shard.slots,
            self.connect(address, False),
            pubsub,
            subscriber,
        )
        subscriber.node = handle.address
        subscriber.prepare = lambda: self._apply_flags(handle)
        subscriber.on_gap = lambda: self._gap(handle)
        subscriber.on_disconnect = self._poke.set
        # A node that appears later is a gap from its first subscription on: its events
        # before that (a promoted replica's, a new node's migrated keys') were never heard.
        subscriber.subscribed_once = gap
        handle.task = asyncio.create_task(subscriber.run(), name=f"subscriber {handle.address}")
        self.nodes[handle.address] = handle
        log.info("cluster.node_added", node=handle.address, slots=shard.slot_text(), gap=gap)
        return handle

    async def _drop(self, handle: NodeHandle, reason: str) -> None:
        self.nodes.pop(handle.address, None)
        if handle.task is not None:
            handle.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, RedisError, OSError):
                await handle.task
        for client in (handle.pubsub, handle.command):
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()
        self.ctx.metrics.set_node_subscriber_connected(handle.address, None)
        log.info("cluster.node_dropped", node=handle.address, reason=reason)

    async def _apply_flags(self, handle: NodeHandle) -> None:
        """Merge and set the notify flags on this node (before each subscription, and at a gap)."""
        settings = self.ctx.settings
        required = required_flags(settings.daemon.raw_key_events)
        manage = settings.redis.manage_notifications
        handle.notify = await ensure_notifications(handle.command, manage=manage, required=required)

    def _gap(self, handle: NodeHandle) -> None:
        task = asyncio.create_task(self._run_gap(handle), name=f"gap {handle.address}")
        self._gaps.add(task)
        task.add_done_callback(self._gaps.discard)

    async def _run_gap(self, handle: NodeHandle) -> None:
        log.warning("cluster.node_gap", node=handle.address, effect="flags re-applied, sweep and node scan")
        try:
            await self._apply_flags(handle)
        except (RedisError, OSError) as exc:
            log.warning("cluster.flags_failed", node=handle.address, error=str(exc))
        self.hints.due_at(None)
        if self.on_gap is not None:
            await self.on_gap(handle)

    async def wait_subscribed(self, timeout_s: float) -> bool:
        """True once the topology was read and every primary's subscriber is subscribed."""
        try:
            await asyncio.wait_for(self.ready.wait(), timeout_s)
            waits = [h.subscriber.subscribed.wait() for h in self.nodes.values()]
            await asyncio.wait_for(asyncio.gather(*waits), timeout_s)
        except TimeoutError:
            return False
        return True

    def poke(self) -> None:
        """Read the topology now (the storage client met MOVED, ASK or a lost connection)."""
        self._poke.set()

    def states(self) -> dict[str, str]:
        """The subscriber state per primary (for the heartbeat and ``status``)."""
        return {
            a: "subscribed" if h.subscriber.subscribed.is_set() else "connecting"
            for a, h in self.nodes.items()
        }

    async def prove_events(self, base: str) -> dict[str, str]:
        """A canary per primary, named into a slot that node owns: ``ok`` or ``failed`` by address."""
        results = {}
        for handle in list(self.nodes.values()):
            key = key_in_slots(base, handle.slots)
            ok = await prove_events(handle.command, key, handle.subscriber.expect_canary(key))
            results[handle.address] = "ok" if ok else "failed"
        return results

    async def close(self) -> None:
        """Stop every subscriber and close every node client."""
        for handle in list(self.nodes.values()):
            await self._drop(handle, "stopping")
        for task in list(self._gaps):
            task.cancel()
