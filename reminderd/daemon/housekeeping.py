"""The daemon's periodic work besides the sweep, as ``PeriodicLoop`` jobs.

Lease renewal runs from start-up on (a slow occurrence of the recovery keeps its lease);
the rest once live: the heartbeat (at once, then every ``daemon.heartbeat_interval``:
notice a Redis that restarted or failed over, write this instance's heartbeat for
``status``, refresh the gauges and the unit's status line), the adoption scan (every
``daemon.adoption_interval``: take in raw trigger keys that no expired event announced)
and the systemd watchdog. Every interval is read from the settings in force at each tick,
so a reload changes it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
import structlog

from reminderd.daemon.periodic import PeriodicLoop
from reminderd.pipeline.capacity import Capacity
from reminderd.pipeline.hints import Hints
from reminderd.pipeline.intake import Intake
from reminderd.pipeline.recovery import Recovery
from reminderd.pipeline.runtime import Context
from reminderd.storage.names import Names
from reminderd.storage.presence import Identity, beat
from reminderd.storage.server import NotifyState, ensure_notifications, required_flags
from reminderd.telemetry.health import Health
from reminderd.telemetry.log_output import dropped_lines
from reminderd.telemetry.systemd import Notifier

log = structlog.get_logger("reminderd.daemon.housekeeping")
MIN_RENEW_MS = 100


async def reapply_notifications(storage: aioredis.Redis, state: NotifyState, ctx: Context) -> None:
    """Merge the notification flags again (a new connection or server may have lost them)
    and keep what the heartbeat reports in step."""
    manage, required = notify_wanted(ctx)
    fresh = await ensure_notifications(storage, manage=manage, required=required)
    state.flags, state.ok = fresh.flags, fresh.ok


def notify_wanted(ctx: Context) -> tuple[bool, str]:
    """Whether reminderd sets ``notify-keyspace-events``, and the flags it needs there."""
    return ctx.settings.redis.manage_notifications, required_flags(ctx.settings.daemon.raw_key_events)


def renewal(ctx: Context, capacity: Capacity) -> PeriodicLoop:
    """Renew the leases of occurrences in flight, three times per lease.

    A run later than a whole lease after the one before (the process was stopped, or its
    host stalled) means the leases in flight lapsed and other instances may be running
    them: said once (``lease.lapsed``); each verdict of those is then dropped at its finish.
    """
    last_s = time.monotonic()

    async def renew() -> None:
        nonlocal last_s
        now_s, lease_ms = time.monotonic(), ctx.settings.daemon.lease_ms
        if len(capacity) and (now_s - last_s) * 1000 > lease_ms:
            gap_ms = round((now_s - last_s) * 1000)
            log.warning("lease.lapsed", gap_ms=gap_ms, lease_ms=lease_ms, in_flight=len(capacity))
        last_s = now_s
        if len(capacity):
            await ctx.store.renew(ctx.instance, capacity.leases(), lease_ms)

    return PeriodicLoop("renew", renew, lambda: max(MIN_RENEW_MS, ctx.settings.daemon.lease_ms // 3))


def watchdog(notifier: Notifier, health: Health) -> PeriodicLoop:
    """Tell systemd (and ``/healthz``) that the event loop is alive, at least once a second."""
    interval_ms = round(min(notifier.watchdog_interval_s() or 1.0, 1.0) * 1000)

    async def ping() -> None:
        health.beat()
        notifier.watchdog()

    return PeriodicLoop("watchdog", ping, lambda: interval_ms, run_now=True)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """One heartbeat run (call it); the fields are what it reads and where it reports."""

    storage: aioredis.Redis
    names: Names
    me: Identity
    ctx: Context
    intake: Intake
    recovery: Recovery
    notifier: Notifier
    notify_state: NotifyState
    hints: Hints  # told of a new server: sweep now, re-apply the notification flags
    # Cluster: the subscriber state per primary; the topology watcher, not the heartbeat,
    # notices a node that restarted or failed over (INFO of "the server" names no one node).
    nodes: Callable[[], dict[str, str] | None] | None = None

    async def __call__(self) -> None:
        """Check the server, beat, refresh the gauges and the unit's status."""
        fired, in_flight = self.intake.dispatcher.fired_total, len(self.intake.capacity)
        extra = {
            "last_sweep_ms": self.intake.last_sweep_ms,
            "fired": fired,
            "in_flight": in_flight,
            "canary": self.notify_state.canary,
            "notifications": self.notify_state.flags,
            "log_dropped": dropped_lines(),
        }
        if self.nodes is not None:
            extra["nodes"] = self.nodes()
        # Look at the server before writing to it: our own heartbeat would hide an empty Redis.
        elif await self.recovery.server_changed():
            self.hints.new_connection()
        interval_ms = self.ctx.settings.daemon.heartbeat_interval_ms
        offset_ms = await beat(self.storage, self.names, self.me, interval_ms, extra)
        self.ctx.metrics.set_clock_offset(offset_ms)
        backlog = await self.recovery.refresh_gauges()
        self.ctx.metrics.set_in_flight(in_flight)
        self.notifier.status(f"backlog {backlog}, fired {fired}")

    def loops(self, health: Health, adoption: PeriodicLoop | None = None) -> list[PeriodicLoop]:
        """The heartbeat (first run at once) and the adoption scan (``adoption`` on Cluster:
        one per primary); both report to ``health`` whether Redis answers."""
        heartbeat_ms = lambda: self.ctx.settings.daemon.heartbeat_interval_ms  # noqa: E731
        adoption_ms = lambda: self.ctx.settings.daemon.adoption_interval_ms  # noqa: E731
        if adoption is None:
            adoption = PeriodicLoop("adoption", self.recovery.adopt_scan, adoption_ms, health=health)
        return [PeriodicLoop("heartbeat", self, heartbeat_ms, run_now=True, health=health), adoption]
