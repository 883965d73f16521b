"""Following the primary under Sentinel: what the daemon does when it moves.

``PrimaryWatch`` (``reminderd.storage.sentinel``) says that the primary moved, from a
sentinel's ``+switch-master`` (seen about 2 s after the old primary died) or a command that
met ``READONLY``. Then, at once rather than at the next heartbeat: drop the pools and wait for
the new primary (each connection proves it with ``ROLE``), merge and set the notification
flags there (``CONFIG SET`` is not replicated: a promoted replica has its own, often none),
and reconcile: tell the pipeline of a new server (it sweeps everything due), wait for the
subscriber to be subscribed on the new primary, then adopt raw trigger keys whose events were
lost before it was (in that order, so no raw key falls between the two). The heartbeat
still notices the new server on its own (its run id), so a missed announcement costs one
heartbeat interval, not a reminder.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from reminderd.daemon.housekeeping import reapply_notifications
from reminderd.pipeline.hints import Hints
from reminderd.pipeline.recovery import Recovery
from reminderd.pipeline.runtime import Context
from reminderd.storage.sentinel import PrimaryChange, PrimaryWatch
from reminderd.storage.server import NotifyState

log = structlog.get_logger("reminderd.daemon.failover")
RECONNECT_TIMEOUT_S = 30.0  # a Sentinel failover takes seconds; past this the heartbeat takes over
SUBSCRIBE_TIMEOUT_S = 10.0  # the subscriber reconnects with its own backoff (at most 5 s)


@dataclass(frozen=True, slots=True)
class Failover:
    """Follows each change of primary (``run`` is a task of the daemon's task group)."""

    watch: PrimaryWatch
    storage: aioredis.Redis
    ctx: Context
    notify_state: NotifyState
    hints: Hints
    recovery: Recovery
    subscribed: asyncio.Event  # the subscriber's: set while it listens

    async def run(self) -> None:
        """Forever: wait for a change of primary, then follow it."""
        while True:
            change = await self.watch.changed()
            try:
                await self.follow(change)
            except (RedisError, TimeoutError) as exc:
                log.error(
                    "redis.failover_unfinished",
                    reason=change.reason,
                    error=str(exc),
                    note="the heartbeat notices the new server and sweeps",
                )

    async def follow(self, change: PrimaryChange) -> None:
        """Reconnect, re-apply the flags, sweep and adopt; one log line with what it took."""
        started = time.monotonic()
        primary = await self.watch.reconnect(RECONNECT_TIMEOUT_S)
        await reapply_notifications(self.storage, self.notify_state, self.ctx)
        self.hints.new_connection()  # sweep now; the subscriber's dropped connection re-subscribes
        try:
            await asyncio.wait_for(self.subscribed.wait(), SUBSCRIBE_TIMEOUT_S)
        except TimeoutError:
            log.warning("redis.subscribe_slow", note="adopting anyway; the periodic scan repeats it")
        adopted = await self.recovery.adopt_all()
        log.warning(
            "redis.primary_followed",
            reason=change.reason,
            primary=primary,
            notifications=self.notify_state.flags,
            adopted=adopted,
            took_ms=round((time.monotonic() - started) * 1000),
        )
