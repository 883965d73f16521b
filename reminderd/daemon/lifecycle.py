"""``reminderd run``: lifecycle of one daemon instance.

One ``AsyncExitStack`` owns every resource (embedded Redis, connections, HTTP client,
the processors in force, metrics endpoint); one ``TaskGroup`` owns every task: the
pipeline's loops, the periodic jobs (``reminderd.daemon.periodic``) and the one-off work
a reload or a reconnect starts. Signal handlers only set events; the main task drains.
Start-up order matters: subscribe first (so no event is missed), then fix and prove
notifications, then reconcile (recover, repair, adopt), then READY=1 and live service.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from reminderd.config import Settings, load_config
from reminderd.core.pii import mask_pii
from reminderd.daemon.cluster import node_adoption
from reminderd.daemon.failover import Failover
from reminderd.daemon.housekeeping import Heartbeat, reapply_notifications, renewal, watchdog
from reminderd.daemon.periodic import PeriodicLoop
from reminderd.daemon.reload import build_runtime, close_later, close_processors, reload_runtime
from reminderd.daemon.startup import canary_key, open_store, wait_for_redis
from reminderd.daemon.wiring import Pipeline, assemble, prove_notifications, reconcile
from reminderd.errors import ConfigError, ReminderdError
from reminderd.pipeline.hints import Hints
from reminderd.pipeline.runtime import Context
from reminderd.processors.base import HttpClient, ProcessorContext
from reminderd.storage.cluster import check_cluster_layout, is_cluster
from reminderd.storage.connection import UnreachableNotice, make_client, resolve_url
from reminderd.storage.names import Names
from reminderd.storage.presence import Identity, retire
from reminderd.storage.sentinel import PrimaryWatch
from reminderd.storage.server import NotifyState
from reminderd.telemetry.endpoint import MetricsServer
from reminderd.telemetry.health import Health
from reminderd.telemetry.logs import configure_logging
from reminderd.telemetry.metrics import Metrics
from reminderd.telemetry.systemd import Notifier

log = structlog.get_logger("reminderd.daemon.lifecycle")
Tasks = list[asyncio.Task[None]]


class Daemon:
    """One running instance; ``run()`` returns the process exit code."""

    def __init__(self, settings: Settings, config_path: Path | None = None) -> None:
        self.settings = settings  # as loaded at start: builds the resources; once serving, ctx.settings
        self.config_path = config_path
        self.names = Names(settings.namespace)
        self.me = Identity(
            settings.daemon.instance_id or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        )
        self.stop = asyncio.Event()
        self.reload = asyncio.Event()
        self._woken = asyncio.Event()  # set with either, so the main task waits on one event
        self.notifier = Notifier.from_env()
        self.metrics = Metrics()
        self.health = Health()
        self.notify_state = NotifyState()
        self._tg: asyncio.TaskGroup | None = None  # owns every task, set while serving
        self._background: set[asyncio.Task[None]] = set()  # one-off tasks, cancelled at stop
        self._loops: list[PeriodicLoop] = []  # poked at a reload: their intervals may change

    async def run(self) -> int:
        """Start, serve until SIGTERM/SIGINT, drain, and return the exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._signalled, self.stop)
        loop.add_signal_handler(signal.SIGHUP, self._signalled, self.reload)
        async with AsyncExitStack() as stack:
            url = await resolve_url(self.settings.redis, stack, own=True)
            storage = make_client(self.settings.redis, url)
            stack.push_async_callback(storage.aclose)
            subscriber = (
                None if is_cluster(storage) else make_client(self.settings.redis, url, subscriber=True)
            )
            if subscriber is not None:  # on Cluster the topology watcher opens one per primary
                stack.push_async_callback(subscriber.aclose)
            http = await stack.enter_async_context(HttpClient(self._connections_per_host()))
            notice = UnreachableNotice(url)
            if not await wait_for_redis(storage, self.stop, self.health, self.notifier, notice):
                return 0
            await check_cluster_layout(self.settings, storage)  # the stored shard count
            processor_log = structlog.get_logger("reminderd.processor")
            self._processor_ctx = ProcessorContext(storage, http, self.names, processor_log)
            runtime = build_runtime(self.settings, self._processor_ctx)
            store = open_store(self.settings, storage, self.metrics)
            self.ctx = Context(store, runtime, self.metrics, self.me.instance, http)
            stack.push_async_callback(self._close_runtime)  # the one in force at exit
            if self.settings.metrics.enabled:
                server = MetricsServer(
                    self.settings.metrics.host, self.settings.metrics.port, self.metrics, self.health.snapshot
                ).start()
                stack.callback(server.stop)
            return await self._serve(storage, subscriber)
        return 0  # pragma: no cover - the block always returns

    def _connections_per_host(self) -> int:
        """Connection slots per HTTP host, read at start: by default one per occurrence in flight."""
        daemon = self.settings.daemon
        return daemon.http_connections_per_host or daemon.concurrency

    async def _close_runtime(self) -> None:
        await close_processors(self.ctx.runtime)

    async def _serve(self, storage: aioredis.Redis, subscriber: aioredis.Redis | None) -> int:
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            p = assemble(self.ctx, tg, storage, subscriber)
            # Work that must go on while draining: verdicts, lease renewal, the watchdog.
            keep = [
                tg.create_task(p.finisher.run(), name="finisher"),
                self._start(renewal(self.ctx, p.intake.capacity)),
            ]
            feeds = [tg.create_task(p.feed.run(), name="subscriber")]
            await self._startup(storage, p)
            feeds += [
                tg.create_task(p.intake.run_timer(), name="timer"),
                tg.create_task(p.intake.run_events(), name="events"),
                *self._single_server_tasks(storage, p),
            ]
            keep.append(self._start(watchdog(self.notifier, self.health)))
            feeds += [
                self._start(loop) for loop in self._heartbeat(storage, p).loops(self.health, *_on_nodes(p))
            ]
            if subscriber is not None:
                keep += self._follow_primary(storage, subscriber, p)
            await self._until_stopped()
            left = await self._drain(p, feeds, keep)
        self._tg = None
        await _quietly(retire(storage, self.names, self.me))
        log.info("daemon.stopped", unfinished=left, fired=p.intake.dispatcher.fired_total)
        return 0

    def _start(self, loop: PeriodicLoop) -> asyncio.Task[None]:
        assert self._tg is not None
        self._loops.append(loop)
        return self._tg.create_task(loop.run(), name=loop.name)

    def _heartbeat(self, storage: aioredis.Redis, p: Pipeline) -> Heartbeat:
        return Heartbeat(
            storage, self.names, self.me, self.ctx, p.intake, p.recovery,
            self.notifier, self.notify_state, p.hints, None if p.watcher is None else lambda: p.nodes,
        )  # fmt: skip

    def _follow_primary(self, storage: aioredis.Redis, subscriber: aioredis.Redis, p: Pipeline) -> Tasks:
        """Under Sentinel: listen for a new primary and follow it (``reminderd.daemon.failover``)."""
        if self.settings.redis.sentinel is None or self._tg is None:
            return []
        watch = PrimaryWatch(self.settings.redis.sentinel, [storage, subscriber])
        assert p.subscriber is not None
        follow = Failover(
            watch, storage, self.ctx, self.notify_state, p.hints, p.recovery, p.subscriber.subscribed
        )
        return [self._tg.create_task(watch.run(), name="sentinels"), self._tg.create_task(follow.run())]

    async def _drain(self, p: Pipeline, feeds: Tasks, keep: Tasks) -> int:
        """Stop taking work, finish (or give up on) what is in flight, then stop the rest."""
        self.notifier.stopping("draining")
        log.info("daemon.stopping", in_flight=len(p.intake.capacity))
        for task in feeds:
            task.cancel()
        left = await p.intake.dispatcher.drain(self.ctx.settings.daemon.drain_timeout_ms / 1000)
        await p.finisher.flush()
        for task in (*keep, *self._background):
            task.cancel()
        return left

    async def _startup(self, storage: aioredis.Redis, p: Pipeline) -> None:
        started = time.monotonic()
        key = canary_key(self.names, self.me.instance)
        self.notify_state = await prove_notifications(p, storage, key, self.ctx)
        summary = await reconcile(p)
        self.health.startup_sweep_done = True
        log.info(
            "daemon.started",
            instance=self.me.instance,
            took_ms=round((time.monotonic() - started) * 1000),
            notifications=self.notify_state.flags,
            canary=self.notify_state.canary,
            **summary,
        )
        self.notifier.ready(f"recovered {summary['recovered']}, adopted {summary['adopted']}")

    def _single_server_tasks(self, storage: aioredis.Redis, p: Pipeline) -> Tasks:
        """One Redis: re-apply the flags after a reconnect, an adoption pass after a gap (on
        Cluster the watcher does both per node)."""
        if p.watcher is not None or self._tg is None:
            return []
        return [
            self._tg.create_task(self._reapply_on_reconnect(storage, p.hints), name="reapply"),
            self._tg.create_task(p.recovery.run_gap_passes(p.hints), name="gaps"),
        ]

    async def _reapply_on_reconnect(self, storage: aioredis.Redis, hints: Hints) -> None:
        """After each new connection or server (events may have been lost) re-apply the flags."""
        while True:
            await hints.reconnected.wait()
            hints.reconnected.clear()
            try:
                await reapply_notifications(storage, self.notify_state, self.ctx)
            except RedisError as exc:
                log.warning("redis.notifications_reapply_failed", error=str(exc))

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run one-off work in the task group; a failure is logged, a stop cancels it."""
        assert self._tg is not None
        task = self._tg.create_task(_logged(coro, name), name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _signalled(self, event: asyncio.Event) -> None:
        """A signal handler: set ``event`` and wake the main task, nothing more."""
        event.set()
        self._woken.set()

    async def _until_stopped(self) -> None:
        while not self.stop.is_set():
            await self._woken.wait()
            self._woken.clear()
            if self.reload.is_set():
                self.reload.clear()
                self._reload()

    def _reload(self) -> None:
        self.notifier.reloading()
        old = reload_runtime(self.ctx, self.config_path, self._processor_ctx)
        if old is None:
            self.notifier.ready("reload failed; old configuration kept")
            return
        for loop in self._loops:
            loop.poke()  # an interval may have changed
        self.notifier.ready("configuration reloaded")
        self._spawn(close_later(old), "close-replaced")


def _on_nodes(p: Pipeline) -> list[PeriodicLoop]:
    """On Cluster, the periodic adoption scan walks each primary (``node_adoption``)."""
    return [] if p.watcher is None else [node_adoption(p.watcher, p.recovery, p.watcher.ctx)]


async def _logged(coro: Awaitable[None], name: str) -> None:
    try:
        await coro
    except Exception:
        log.exception("background.failed", task=name)


async def _quietly(coro: Awaitable[object]) -> None:
    try:
        await coro
    except Exception as exc:
        log.debug("cleanup.failed", error=str(exc))


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where installed: task creation, timers and socket I/O, the daemon's hot path,
    cost about half as much as on the default loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships for Linux and macOS
        return None
    return uvloop.new_event_loop


def run_daemon(config: str | None) -> int:
    """Entry point of ``reminderd run``: load config, configure logs, run, map errors to exit codes."""
    try:
        settings = load_config(config)
    except ConfigError as exc:
        print(f"reminderd: {exc}", file=sys.stderr, flush=True)
        return 2
    configure_logging(settings.logging.level, settings.logging.format, [mask_pii])
    path = Path(config) if config else None
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(Daemon(settings, path).run())
    except ReminderdError as exc:
        log.error("daemon.failed", error=str(exc))
        return exc.exit_code
