"""Intake: the precise timer, the sweep and the event batches, all claiming what is due.

The index is the truth, so the timer alone delivers every reminder; expired events only
make it faster. It sleeps until the earliest due time (never longer than the sweep
interval) and wakes early on a hint (``pipeline.hints``: a wake message, a re-armed
reminder, a new connection). The keys of key events go to the store in batches
(``pipeline.events``), expired ones through the same claim step. Intake owns what it feeds:
the dispatcher, and the Redis clock that every claim reply sets.
"""

from __future__ import annotations

import asyncio
import time

import structlog
from redis.exceptions import RedisError

from reminderd.config.model import DaemonSettings
from reminderd.pipeline.clock import RedisClock
from reminderd.pipeline.dispatch import Dispatcher
from reminderd.pipeline.events import EventBatches, raise_if_cancelled, report_notes
from reminderd.pipeline.finish import Finisher
from reminderd.pipeline.hints import Hints
from reminderd.pipeline.progress import Progress
from reminderd.pipeline.runtime import Context

log = structlog.get_logger("reminderd.pipeline.intake")
# The timer takes the expiry off trigger keys this long before they come due (see
# storage/scripts/disarm.lua), and earlier by the time that takes when many come due at once.
DISARM_AHEAD_MS = 250
DISARM_LEAD_MAX_MS = 5_000
DISARM_SAFETY = 1.5  # a lead half as long again as the measured rate says it needs


class Intake:
    """Claims due occurrences (timer, periodic sweep, events) and hands them to dispatch."""

    def __init__(self, ctx: Context, hints: Hints, finisher: Finisher, group: asyncio.TaskGroup) -> None:
        self.ctx = ctx
        self.hints = hints
        self.clock = RedisClock()
        self.dispatcher = Dispatcher(ctx, self.clock, finisher, group)
        self.capacity = self.dispatcher.capacity
        hints.running = self.capacity.holds_raw
        self.events = EventBatches(ctx, hints, self.dispatcher, self.clock)
        self.last_sweep_ms = 0
        self._disarmed_until_ms = 0
        self._disarm_per_ms = 100.0  # keys disarmed per ms, as last measured (a burst's worth)

    @property
    def _daemon(self) -> DaemonSettings:
        return self.ctx.settings.daemon

    async def sweep_once(self, source: str = "sweep") -> int:
        """Claim due occurrences while there is capacity; how many were claimed."""
        total = 0
        while True:
            slots = self.capacity.free()
            if slots == 0:
                break
            limit = min(self._claim_at_most(), slots)
            got = await self.ctx.store.claim_due(
                self.ctx.instance, limit=limit, lease_ms=self._daemon.lease_ms
            )
            self.clock.observe(got.now_ms)
            report_notes(self.ctx, got.notes, {})
            claims = got.claims
            for claim in claims:
                self.hints.expired.pop(claim.key, None)  # claimed: its queued expired event is moot
            total += self.dispatcher.submit(claims, source)
            self.hints.swept(full=len(claims) == limit)
            if len(claims) < limit:
                break
        self.last_sweep_ms = self.clock.now_ms()
        self.ctx.metrics.swept(self.last_sweep_ms / 1000)  # Redis's clock, as in the heartbeat
        return total

    async def run_timer(self) -> None:
        """Sleep until the next due time or the sweep interval, then sweep; forever."""
        delay_s = 0.0
        while True:
            try:
                claimed = await self.sweep_once("timer")
                delay_s = await self._next_delay_s(claimed)
            except RedisError as exc:
                delay_s = min(max(delay_s * 2, 0.1), 5.0)
                log.warning("redis.sweep_failed", error=str(exc), retry_in_s=delay_s)
            raise_if_cancelled()
            await self._wait(delay_s)

    def _claim_at_most(self) -> int:
        """One claim round trip's size: a quarter of the slots (at most ``sweep_batch``), so
        Redis claims and finishes one batch while this process runs the next, instead of the
        two taking turns over one batch as large as all the slots."""
        return max(1, min(self._daemon.sweep_batch, self._daemon.concurrency // 4))

    def _refill_at(self) -> int:
        """Free slots worth a claim round trip: refilling one slot at a time wastes the trip."""
        return max(1, min(self._daemon.sweep_batch, self._daemon.concurrency) // 4)

    async def _next_delay_s(self, claimed: int) -> float:
        interval_s = self._daemon.sweep_interval_ms / 1000
        if self.capacity.free() < self._refill_at():
            return interval_s  # woken early once enough slots are free
        nxt = await self.ctx.store.next_due()
        if nxt is None:
            return interval_s
        now = self.clock.now_ms()
        until_due_ms = nxt[1] - now
        if until_due_ms <= 0:
            return 0.01 if claimed == 0 else 0.0  # due but held by another instance's lease
        if until_due_ms > DISARM_LEAD_MAX_MS + DISARM_AHEAD_MS:  # look again when the lead may matter
            return min(interval_s, (until_due_ms - DISARM_LEAD_MAX_MS - DISARM_AHEAD_MS) / 1000)
        lead_ms = await self._disarm_lead_ms(nxt[1], until_due_ms)
        if until_due_ms > lead_ms:
            # Wake a little early to disarm what comes due, then sleep to the due instant.
            return min(interval_s, (until_due_ms - lead_ms) / 1000)
        await self._disarm(now, nxt[1] + DISARM_AHEAD_MS)
        return min(interval_s, until_due_ms / 1000)

    async def _disarm_lead_ms(self, due_ms: int, until_due_ms: int) -> float:
        """How long before ``due_ms`` to start disarming: the horizon, plus the time disarming
        the keys due by then takes (a burst of 100,000 takes longer than the horizon: keys
        not disarmed in time expire and send an event each, which every daemon then reads)."""
        if until_due_ms <= DISARM_AHEAD_MS:
            return DISARM_AHEAD_MS
        coming = await self.ctx.store.due_between(due_ms, due_ms + DISARM_AHEAD_MS)
        work_ms = DISARM_SAFETY * coming / self._disarm_per_ms
        return DISARM_AHEAD_MS + min(work_ms, DISARM_LEAD_MAX_MS)

    async def _disarm(self, now_ms: int, until_ms: int) -> None:
        """Take the expiry off trigger keys due up to ``until_ms`` (once each), so they raise no
        expired events (the claim deletes them)."""
        start = max(self._disarmed_until_ms, now_ms)
        if until_ms > start:
            started = time.perf_counter()
            looked = await self.ctx.store.disarm(start, until_ms)
            took_ms = (time.perf_counter() - started) * 1000
            if looked >= 1000 and took_ms > 0:
                self._disarm_per_ms = looked / took_ms
            self._disarmed_until_ms = until_ms

    async def _wait(self, delay_s: float) -> None:
        self.hints.wake.clear()
        self.hints.planned_wake_ms = self.clock.now_ms() + int(delay_s * 1000)
        waiters: list[asyncio.Future[object]] = [asyncio.ensure_future(self.hints.wake.wait())]
        if self.capacity.free() < self._refill_at():
            waiters.append(asyncio.ensure_future(self.capacity.room(self._refill_at())))
        try:
            await asyncio.wait(waiters, timeout=delay_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()

    async def run_events(self) -> None:
        """Take the keys of key events to the store in batches; forever (``pipeline.events``)."""
        await self.events.run()

    async def drain_backlog(self) -> int:
        """Start-up: claim everything already due, waiting for capacity as needed (with
        ``recovery.started`` / ``recovery.progress`` lines in the log)."""
        _scheduled, due = await self.ctx.store.counts(self.clock.now_ms())
        progress, total = Progress("recovery", due), 0
        while True:
            claimed = await self.sweep_once("startup")
            total += claimed
            progress.update(total)
            _scheduled, due = await self.ctx.store.counts(self.clock.now_ms())
            if due == 0 or (claimed == 0 and self.capacity.free() > 0):
                return total
            if self.capacity.free() < self._refill_at():
                await self.capacity.room(self._refill_at())
