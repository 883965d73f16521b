"""One path for every claimed occurrence, whoever found it (event, timer, sweep).

``submit`` starts one task per claim in the daemon's task group; each reads, top down:
``prepare`` the occurrence → read the user's ``profile`` if the rule needs it → ``plan``
(misfire policy, quiet hours, the processors still to run) → run them concurrently, each
under its own timeout → ``judge`` their outcomes → the finisher writes the verdict →
``report`` logs and counts it. The decisions are pure functions (``pipeline.decisions``);
this module holds the hot path: one task per claim, no gather for a single processor.
"""

from __future__ import annotations

import asyncio
import time

import structlog
from redis.exceptions import RedisError

from reminderd.models import Occurrence
from reminderd.pipeline.capacity import Capacity
from reminderd.pipeline.clock import RedisClock
from reminderd.pipeline.decisions import (
    Complete,
    Dead,
    Outcome,
    Prepared,
    Run,
    Verdict,
    judge,
    outcome_of,
    plan,
    prepare,
)
from reminderd.pipeline.finish import Finisher
from reminderd.pipeline.profile import with_profile
from reminderd.pipeline.report import report
from reminderd.pipeline.runtime import Context, Runtime
from reminderd.processors.budget import budget
from reminderd.storage.store import Claim

log = structlog.get_logger("reminderd.pipeline.dispatch")


class Dispatcher:
    """Runs claimed occurrences concurrently, up to ``daemon.concurrency``, each to its verdict.

    The tasks belong to ``group``, the daemon's task group; ``drain`` waits for them, cancels
    what is left at its deadline and awaits what it cancelled.
    """

    def __init__(self, ctx: Context, clock: RedisClock, finisher: Finisher, group: asyncio.TaskGroup) -> None:
        self.ctx = ctx
        self.clock = clock
        self.finisher = finisher
        self.capacity = Capacity(ctx)
        self.fired_total = 0
        self._group = group
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, claims: list[Claim], source: str) -> int:
        """Start processing claimed occurrences (never blocks); how many were new."""
        new = 0
        for claim in claims:
            if not self.capacity.add(claim):
                continue  # our own lease lapsed and we re-claimed it: already running
            new += 1
            task = self._group.create_task(self._guarded(claim, source))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self.ctx.metrics.set_in_flight(len(self.capacity))
        return new

    async def drain(self, timeout_s: float) -> int:
        """Wait for in-flight work up to ``timeout_s``, then cancel the rest; how many were cancelled."""
        if not self._tasks:
            return 0
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        return len(pending)

    async def _guarded(self, claim: Claim, source: str) -> None:
        try:
            await self.occurrence(claim, source)
        except asyncio.CancelledError:
            raise
        except RedisError as exc:
            # The lock lapses and the occurrence comes due again: nothing lost.
            log.warning("reminder.redis_error", key=claim.key, occurrence=claim.occurrence, error=str(exc))
        except Exception:
            log.exception("reminder.internal_error", key=claim.key, occurrence=claim.occurrence)
        finally:
            self.capacity.remove(claim)
            self.ctx.metrics.set_in_flight(len(self.capacity))

    async def occurrence(self, claim: Claim, source: str) -> Verdict:
        """One claim from start to finish: decide, write the verdict, report it; the verdict."""
        runtime = self.ctx.runtime  # a reload mid-way does not change what this one runs with
        prepared = prepare(claim, runtime.settings)
        if isinstance(prepared, Dead):
            verdict: Verdict = prepared
            occ = None
        else:
            occ = prepared.occ
            verdict = await self._decide(runtime, claim, prepared)
        if not await self.finisher.finish(claim, verdict):
            # Paused (SIGSTOP, a stalled host) past the lease: another instance owns it now.
            dropped = type(verdict).__name__
            log.warning("lease.lost", key=claim.key, occurrence=claim.occurrence, dropped=dropped)
            self.ctx.metrics.lease_lost()
            return verdict
        report(self.ctx, claim, verdict, occ, source)
        if isinstance(verdict, Complete):
            self.fired_total += 1
        return verdict

    async def _decide(self, runtime: Runtime, claim: Claim, prepared: Prepared) -> Verdict:
        settings, rule = runtime.settings, prepared.rule
        occ = await with_profile(self.ctx.store, claim, prepared.occ, rule, settings)
        step = plan(claim, occ, rule, settings)
        if not isinstance(step, Run):
            return step
        outcomes = await self._run(runtime, claim, occ, step.pending)
        return judge(outcomes, step, rule.retry or settings.retry, self.clock.now_ms())

    async def _run(
        self, runtime: Runtime, claim: Claim, occ: Occurrence, pending: tuple[str, ...]
    ) -> list[Outcome]:
        if len(pending) == 1:  # the common case: no gather, no second task
            return [await self._call(runtime, claim, occ, pending[0], False)]
        return list(await asyncio.gather(*(self._call(runtime, claim, occ, p, True) for p in pending)))

    async def _call(self, runtime: Runtime, claim: Claim, occ: Occurrence, name: str, mark: bool) -> Outcome:
        """Run one processor under its timeout; with ``mark``, record its success at once.

        With several processors, one that finished is recorded before the others end, so a
        retry or a crash recovery does not run it again.
        """
        started = time.perf_counter()
        timeout_s = runtime.timeouts_s[name]
        try:
            async with budget(timeout_s):  # a wait for a connection slot is not counted
                outcome = Outcome(name, True, detail=await runtime.processors[name](occ))
        except Exception as exc:
            outcome = outcome_of(name, exc, timeout_s)
        metrics = self.ctx.metrics
        metrics.observe_processor_duration(occ.rule, name, time.perf_counter() - started)
        if outcome.ok:
            metrics.fired(occ.rule, name)
            if mark:
                await self.ctx.store.mark_done(self.ctx.instance, claim, name)
        else:
            metrics.failed(occ.rule, name)
        return outcome
