"""The daemon's periodic work, besides the sweep.

Two loops of their own, started before the live service: lease renewal (from start-up
on, so a slow occurrence of the recovery keeps its lease) and the systemd watchdog. Two
jobs run by ``reminderd.core.cron.PeriodicJobs`` once live: heartbeat (at once, then every
``daemon.heartbeat_interval``: notice a Redis that restarted or failed over, write this
instance's heartbeat for ``status``, refresh the gauges and the unit's status line) and
adoption (every ``daemon.adoption_interval``: take in raw trigger keys that no expired
event announced).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from reminderd.core.cron import PeriodicJobs
from reminderd.pipeline.capacity import Capacity
from reminderd.pipeline.hints import Hints
from reminderd.pipeline.intake import Intake
from reminderd.pipeline.recovery import Recovery
from reminderd.pipeline.runtime import Context
from reminderd.storage.names import Names
from reminderd.storage.presence import Identity, beat
from reminderd.storage.server import NotifyState
from reminderd.telemetry.metrics import Health, Metrics
from reminderd.telemetry.systemd import Notifier

log = structlog.get_logger("reminderd.daemon.housekeeping")


async def renew_leases(ctx: Context, capacity: Capacity) -> None:
    """Keep the leases of long-running occurrences (from start-up on, not only once live)."""
    while True:
        lease_ms = ctx.settings.daemon.lease_ms
        await asyncio.sleep(max(0.1, lease_ms / 3000))
        if len(capacity):
            try:
                await ctx.store.renew(ctx.instance, capacity.leases(), lease_ms)
            except RedisError as exc:
                log.warning("redis.renew_failed", error=str(exc))


async def watchdog(notifier: Notifier, health: Health) -> None:
    """Tell systemd (and ``/healthz``) that the loop is alive, at least once a second."""
    interval_s = notifier.watchdog_interval_s() or 1.0
    while True:
        health.beat()
        notifier.watchdog()
        await asyncio.sleep(min(interval_s, 1.0))


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """One heartbeat run (call it); the fields are what it reads and where it reports."""

    storage: aioredis.Redis
    names: Names
    me: Identity
    interval_ms: int
    intake: Intake
    recovery: Recovery
    metrics: Metrics
    notifier: Notifier
    notify_state: NotifyState
    hints: Hints  # told of a new server: sweep now, re-apply the notification flags

    async def __call__(self) -> None:
        """Check the server, beat, refresh the gauges and the unit's status."""
        fired, in_flight = self.intake.dispatcher.fired_total, len(self.intake.capacity)
        extra = {
            "last_sweep_ms": self.intake.last_sweep_ms,
            "fired": fired,
            "in_flight": in_flight,
            "canary": self.notify_state.canary,
            "notifications": self.notify_state.flags,
        }
        # Look at the server before writing to it: our own heartbeat would hide an empty Redis.
        if await self.recovery.server_changed():
            self.hints.new_connection()
        await beat(self.storage, self.names, self.me, self.interval_ms, extra)
        backlog = await self.recovery.refresh_gauges()
        self.metrics.set_in_flight(in_flight)
        self.notifier.status(f"backlog {backlog}, fired {fired}")


def schedule_jobs(jobs: PeriodicJobs, heartbeat: Heartbeat, adoption_interval_ms: int) -> None:
    """Add the heartbeat (first run at once) and the adoption scan to ``jobs``."""
    jobs.add("heartbeat", heartbeat, heartbeat.interval_ms, run_now=True)
    jobs.add("adoption", heartbeat.recovery.adopt_scan, adoption_interval_ms)
