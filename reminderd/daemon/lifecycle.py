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
from reminderd.pipeline.completions import Completer
from reminderd.pipeline.dispatch import Dispatcher, Runtime
from reminderd.pipeline.intake import Sweeper
from reminderd.pipeline.recovery import Maintenance
from reminderd.pipeline.subscriber import Listener
from reminderd.processors.base import ProcessorContext
from reminderd.storage.connection import UnreachableNotice, db_of, make_client
from reminderd.storage.embedded import EmbeddedRedis
from reminderd.storage.names import Names
from reminderd.storage.presence import Identity, retire
from reminderd.storage.server import NotifyState, doctor, ensure_notifications, prove_events
from reminderd.storage.store import Store
from reminderd.telemetry.logs import configure_logging
from reminderd.telemetry.metrics import Health, Metrics, MetricsServer
from reminderd.telemetry.systemd import Notifier

log = structlog.get_logger("reminderd.daemon.lifecycle")


class Daemon:
    """One running instance; ``run()`` returns the process exit code."""

    def __init__(self, settings: Settings, config_path: Path | None = None) -> None:
        self.settings = settings
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
            if not await self._wait_for_redis(storage, UnreachableNotice(url)):
                return 0
            ctx = ProcessorContext(storage, http, self.names, structlog.get_logger("reminderd.processor"))
            runtime = build_runtime(self.settings, ctx)
            stack.push_async_callback(close_processors, runtime)
            self._ctx = ctx
            if self.settings.metrics.enabled:
                server = MetricsServer(
                    self.settings.metrics.host, self.settings.metrics.port, self.metrics, self.health.snapshot
                ).start()
                stack.callback(server.stop)
            return await self._serve(storage, subscriber, runtime, stack)
        return 0  # pragma: no cover - the block always returns

    async def _redis_url(self, stack: AsyncExitStack) -> str:
        cfg = self.settings.redis
        if cfg.url != "embedded":
            return cfg.url
        embedded = await stack.enter_async_context(EmbeddedRedis.for_settings(cfg))
        log.info("redis.embedded", url=embedded.url, pid=embedded.pid)
        return embedded.url

    async def _wait_for_redis(self, storage: aioredis.Redis, notice: UnreachableNotice) -> bool:
        """Retry until Redis answers (or we are told to stop): systemd may start us first."""
        delay_s = 0.2
        while not self.stop.is_set():
            try:
                await storage.ping()
                self.health.redis_reachable = True
                return True
            except (RedisError, OSError) as exc:
                if notice.due(time.monotonic()):  # the URL and what to check: once, then every minute
                    log.warning("redis.unavailable", **notice.fields(exc), retry_in_s=delay_s)
                self.notifier.status(f"waiting for Redis: {exc}")  # why the unit is not active yet
                try:
                    await asyncio.wait_for(self.stop.wait(), delay_s)
                except TimeoutError:
                    delay_s = min(delay_s * 2, 10.0)
        self.notifier.stopping("stopped before Redis answered")
        return False

    async def _serve(
        self, storage: aioredis.Redis, subscriber: aioredis.Redis, runtime: Runtime, stack: AsyncExitStack
    ) -> int:
        store = Store(storage, self.names, fired_window_ms=self.settings.daemon.raw_dedupe_window_ms)
        completer = Completer(store, self.me.instance)
        dispatcher = Dispatcher(store, runtime, self.metrics, self.me.instance, completer)
        sweeper = Sweeper(store, dispatcher, self.metrics, self.me.instance)
        dispatcher.on_rearm = sweeper.nudge
        maint = Maintenance(store, sweeper, self.metrics, lambda: self.settings)
        listener = Listener(
            subscriber,
            db_of(storage),
            self.names,
            self.metrics,
            prefixes=lambda: self.settings.prefixes,
            on_keys=sweeper.add_event_keys,
            on_wake=sweeper.nudge,
            on_resubscribe=lambda: self._on_new_connection(storage, sweeper),
        )
        jobs = PeriodicJobs()
        async with asyncio.TaskGroup() as tg:
            # Work that must go on while draining: completions and lease renewal.
            keep = [
                tg.create_task(completer.run(), name="completer"),
                tg.create_task(
                    renew_leases(store, dispatcher, self.me.instance, lambda: self.settings), name="renew"
                ),
            ]
            intake = [tg.create_task(listener.run(), name="listener")]
            await self._startup(storage, listener, maint)
            intake += [
                tg.create_task(sweeper.run_timer(), name="timer"),
                tg.create_task(sweeper.run_events(), name="events"),
                tg.create_task(watchdog(self.notifier, self.health), name="watchdog"),
            ]
            jobs.start()
            self._schedule_jobs(jobs, storage, dispatcher, sweeper, maint)
            await self._until_stopped(dispatcher)
            self.notifier.stopping("draining")
            log.info("daemon.stopping", in_flight=len(dispatcher.in_flight))
            for task in intake:
                task.cancel()
            await jobs.shutdown(drain_ms=2000)
            left = await dispatcher.drain(self.settings.daemon.drain_timeout_ms / 1000)
            await completer.flush()
            for task in keep:
                task.cancel()
        await _quietly(retire(storage, self.names, self.me))
        log.info("daemon.stopped", unfinished=left, fired=dispatcher.fired_total)
        return 0

    async def _startup(self, storage: aioredis.Redis, listener: Listener, maint: Maintenance) -> None:
        started = time.monotonic()
        try:
            await asyncio.wait_for(listener.subscribed.wait(), 5.0)
        except TimeoutError:
            log.warning("redis.subscribe_slow", note="continuing; the sweep delivers regardless")
        self.notify_state = await ensure_notifications(
            storage, manage=self.settings.redis.manage_notifications
        )
        self.notify_state.warnings = await doctor(storage)
        await self._canary(storage, listener)
        summary = await maint.reconcile()
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

    async def _canary(self, storage: aioredis.Redis, listener: Listener) -> None:
        if not self.notify_state.ok:
            self.notify_state.canary = "skipped"
            return
        key = f"{self.names.canary_prefix}{self.me.instance}:{secrets.token_hex(4)}"
        ok = await prove_events(storage, key, listener.expect_canary(key))
        self.notify_state.canary = "ok" if ok else "failed"
        if ok:
            log.info("redis.canary", result="ok")
        else:
            log.warning(
                "redis.canary",
                result="failed",
                effect="expired events do not arrive; delivery relies on the sweep",
            )

    def _on_new_connection(self, storage: aioredis.Redis, sweeper: Sweeper) -> None:
        """Events may have been lost: re-apply flags and sweep at once."""
        sweeper.nudge()
        self._spawn(self._reapply_notifications(storage))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _reapply_notifications(self, storage: aioredis.Redis) -> None:
        """Merge the flags again and keep what the heartbeat reports in step."""
        fresh = await ensure_notifications(storage, manage=self.settings.redis.manage_notifications)
        self.notify_state.flags, self.notify_state.ok = fresh.flags, fresh.ok

    def _schedule_jobs(
        self,
        jobs: PeriodicJobs,
        storage: aioredis.Redis,
        dispatcher: Dispatcher,
        sweeper: Sweeper,
        maint: Maintenance,
    ) -> None:
        heartbeat = Heartbeat(
            storage, self.names, self.me, self.settings.daemon.heartbeat_interval_ms,
            dispatcher, sweeper, maint, self.metrics, self.notifier, self.notify_state,
            on_new_server=lambda: self._on_new_connection(storage, sweeper),
        )  # fmt: skip
        schedule_jobs(jobs, heartbeat, self.settings.daemon.adoption_interval_ms)

    async def _until_stopped(self, dispatcher: Dispatcher) -> None:
        while not self.stop.is_set():
            stop = asyncio.ensure_future(self.stop.wait())
            reload = asyncio.ensure_future(self.reload.wait())
            await asyncio.wait([stop, reload], return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            reload.cancel()
            if self.reload.is_set():
                self.reload.clear()
                await self._reload(dispatcher)

    async def _reload(self, dispatcher: Dispatcher) -> None:
        self.notifier.reloading()
        old = reload_runtime(self.settings, self.config_path, self._ctx, dispatcher)
        if old is None:
            self.notifier.ready("reload failed; old configuration kept")
            return
        self.settings = dispatcher.runtime.settings
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
