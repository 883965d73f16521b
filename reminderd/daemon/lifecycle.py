"""``reminderd run``: lifecycle of one daemon instance.

One ``AsyncExitStack`` owns every resource (embedded Redis, connections, HTTP client,
processors, metrics endpoint); one ``TaskGroup`` owns every loop. Signal handlers only
set events; the main task drains. Start-up order matters: subscribe first (so no event
is missed), then fix and prove notifications, then reconcile (recover, repair, adopt),
then READY=1 and live service.
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

import httpx
import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from reminderd.config import Settings, load_config
from reminderd.core.cron import PeriodicJobs
from reminderd.core.pii import mask_pii
from reminderd.daemon.housekeeping import Heartbeat, renew_leases, schedule_jobs, watchdog
from reminderd.daemon.reload import build_runtime, close_later, close_processors, reload_runtime
from reminderd.errors import ConfigError, ReminderdError
from reminderd.pipeline.finish import Finisher
from reminderd.pipeline.hints import Hints
from reminderd.pipeline.intake import Intake
from reminderd.pipeline.recovery import Recovery
from reminderd.pipeline.runtime import Context
from reminderd.pipeline.subscriber import Subscriber
from reminderd.processors.base import ProcessorContext
from reminderd.storage.connection import db_of, make_client
from reminderd.storage.embedded import EmbeddedRedis
from reminderd.storage.names import Names
from reminderd.storage.presence import Identity, retire
from reminderd.storage.server import NotifyState, doctor, ensure_notifications, prove_events, required_flags
from reminderd.storage.store import Store
from reminderd.telemetry.logs import configure_logging
from reminderd.telemetry.metrics import Health, Metrics, MetricsServer
from reminderd.telemetry.systemd import Notifier

log = structlog.get_logger("reminderd.daemon.lifecycle")


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
        self.notifier = Notifier.from_env()
        self.metrics = Metrics()
        self.health = Health()
        self.notify_state = NotifyState()
        self._background: set[asyncio.Task[None]] = set()  # fire-and-forget work, kept referenced

    async def run(self) -> int:
        """Start, serve until SIGTERM/SIGINT, drain, and return the exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload.set)
        async with AsyncExitStack() as stack:
            url = await self._redis_url(stack)
            storage = make_client(self.settings.redis, url)
            stack.push_async_callback(storage.aclose)
            subscriber = make_client(self.settings.redis, url, subscriber=True)
            stack.push_async_callback(subscriber.aclose)
            http = httpx.AsyncClient(timeout=10.0, limits=httpx.Limits(max_connections=200))
            stack.push_async_callback(http.aclose)
            if not await self._wait_for_redis(storage):
                return 0
            self._processor_ctx = ProcessorContext(
                storage, http, self.names, structlog.get_logger("reminderd.processor")
            )
            store = Store(storage, self.names)
            runtime = build_runtime(self.settings, self._processor_ctx)
            self.ctx = Context(store, runtime, self.metrics, self.me.instance)
            stack.push_async_callback(self._close_processors)
            if self.settings.metrics.enabled:
                server = MetricsServer(
                    self.settings.metrics.host, self.settings.metrics.port, self.metrics, self.health.snapshot
                ).start()
                stack.callback(server.stop)
            return await self._serve(storage, subscriber)
        return 0  # pragma: no cover - the block always returns

    async def _close_processors(self) -> None:
        """Close the processors in force at exit (replaced ones are closed by their reload)."""
        await close_processors(self.ctx.runtime)

    async def _redis_url(self, stack: AsyncExitStack) -> str:
        cfg = self.settings.redis
        if cfg.url != "embedded":
            return cfg.url
        embedded = await stack.enter_async_context(
            EmbeddedRedis(Path(cfg.embedded.dir) if cfg.embedded.dir else None, cfg.embedded.binary)
        )
        log.info("redis.embedded", url=embedded.url, pid=embedded.pid)
        return embedded.url

    async def _wait_for_redis(self, storage: aioredis.Redis) -> bool:
        """Retry until Redis answers (or we are told to stop): systemd may start us first."""
        delay_s = 0.2
        while not self.stop.is_set():
            try:
                await storage.ping()
                self.health.redis_reachable = True
                return True
            except (RedisError, OSError) as exc:
                log.warning("redis.unavailable", error=str(exc), retry_in_s=delay_s)
                self.notifier.status(f"waiting for Redis: {exc}")  # why the unit is not active yet
                try:
                    await asyncio.wait_for(self.stop.wait(), delay_s)
                except TimeoutError:
                    delay_s = min(delay_s * 2, 10.0)
        self.notifier.stopping("stopped before Redis answered")
        return False

    async def _serve(self, storage: aioredis.Redis, subscriber_client: aioredis.Redis) -> int:
        ctx, hints = self.ctx, Hints()
        finisher = Finisher(ctx, hints)
        jobs = PeriodicJobs()
        async with asyncio.TaskGroup() as tg:
            intake = Intake(ctx, hints, finisher, tg)
            recovery = Recovery(ctx, intake)
            subscriber = Subscriber(subscriber_client, db_of(storage), ctx, hints)
            # Work that must go on while draining: verdicts and lease renewal.
            keep = [
                tg.create_task(finisher.run(), name="finisher"),
                tg.create_task(renew_leases(ctx, intake.capacity), name="renew"),
            ]
            feeds = [tg.create_task(subscriber.run(), name="subscriber")]
            await self._startup(storage, subscriber, recovery)
            feeds += [
                tg.create_task(intake.run_timer(), name="timer"),
                tg.create_task(intake.run_events(), name="events"),
                tg.create_task(watchdog(self.notifier, self.health), name="watchdog"),
                tg.create_task(self._reapply_on_reconnect(storage, hints), name="reapply"),
                tg.create_task(recovery.run_gap_passes(hints), name="gaps"),
            ]
            jobs.start()
            self._schedule_jobs(jobs, storage, intake, recovery, hints)
            await self._until_stopped()
            self.notifier.stopping("draining")
            log.info("daemon.stopping", in_flight=len(intake.capacity))
            for task in feeds:
                task.cancel()
            await jobs.shutdown(drain_ms=2000)
            left = await intake.dispatcher.drain(ctx.settings.daemon.drain_timeout_ms / 1000)
            await finisher.flush()
            for task in keep:
                task.cancel()
        await _quietly(retire(storage, self.names, self.me))
        log.info("daemon.stopped", unfinished=left, fired=intake.dispatcher.fired_total)
        return 0

    async def _startup(self, storage: aioredis.Redis, subscriber: Subscriber, recovery: Recovery) -> None:
        started = time.monotonic()
        try:
            await asyncio.wait_for(subscriber.subscribed.wait(), 5.0)
        except TimeoutError:
            log.warning("redis.subscribe_slow", note="continuing; the sweep delivers regardless")
        self.notify_state = await ensure_notifications(
            storage, manage=self.ctx.settings.redis.manage_notifications, required=self._required_flags()
        )
        self.notify_state.warnings = await doctor(storage)
        await self._canary(storage, subscriber)
        summary = await recovery.reconcile()
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

    async def _canary(self, storage: aioredis.Redis, subscriber: Subscriber) -> None:
        if not self.notify_state.ok:
            self.notify_state.canary = "skipped"
            return
        key = f"{self.names.canary_prefix}{self.me.instance}:{secrets.token_hex(4)}"
        ok = await prove_events(storage, key, subscriber.expect_canary(key))
        self.notify_state.canary = "ok" if ok else "failed"
        if ok:
            log.info("redis.canary", result="ok")
        else:
            log.warning(
                "redis.canary",
                result="failed",
                effect="expired events do not arrive; delivery relies on the sweep",
            )

    async def _reapply_on_reconnect(self, storage: aioredis.Redis, hints: Hints) -> None:
        """After each new connection (events may have been lost) re-apply the flags; forever."""
        while True:
            await hints.reconnected.wait()
            hints.reconnected.clear()
            try:
                await self._reapply_notifications(storage)
            except RedisError as exc:
                log.warning("redis.notifications_reapply_failed", error=str(exc))

    def _required_flags(self) -> str:
        return required_flags(self.ctx.settings.daemon.raw_key_events)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _reapply_notifications(self, storage: aioredis.Redis) -> None:
        """Merge the flags again and keep what the heartbeat reports in step."""
        manage = self.ctx.settings.redis.manage_notifications
        fresh = await ensure_notifications(storage, manage=manage, required=self._required_flags())
        self.notify_state.flags, self.notify_state.ok = fresh.flags, fresh.ok

    def _schedule_jobs(
        self, jobs: PeriodicJobs, storage: aioredis.Redis, intake: Intake, recovery: Recovery, hints: Hints
    ) -> None:
        daemon = self.ctx.settings.daemon
        heartbeat = Heartbeat(
            storage, self.names, self.me, daemon.heartbeat_interval_ms,
            intake, recovery, self.metrics, self.notifier, self.notify_state, hints,
        )  # fmt: skip
        schedule_jobs(jobs, heartbeat, daemon.adoption_interval_ms)

    async def _until_stopped(self) -> None:
        while not self.stop.is_set():
            stop = asyncio.ensure_future(self.stop.wait())
            reload = asyncio.ensure_future(self.reload.wait())
            await asyncio.wait([stop, reload], return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            reload.cancel()
            if self.reload.is_set():
                self.reload.clear()
                self._reload()

    def _reload(self) -> None:
        self.notifier.reloading()
        old = reload_runtime(self.ctx, self.config_path, self._processor_ctx)
        if old is None:
            self.notifier.ready("reload failed; old configuration kept")
            return
        self.notifier.ready("configuration reloaded")
        self._spawn(close_later(old))


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
