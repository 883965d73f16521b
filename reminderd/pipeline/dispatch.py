"""One path for every claimed occurrence, whoever found it (event, timer, sweep).

``submit`` starts one task per batch of claims in the daemon's task group. It reads each
claim (``prepare``) and sends it one of two ways, to the same decisions:

- a rule whose processors all have a batch form and that reads no profile goes with the
  batch (``pipeline.batch``): planned, run once per processor for all of it, judged item
  by item, its verdicts written in one finisher wait;
- any other occurrence gets a task of its own, which reads top down: read the user's
  ``profile`` if the rule needs it → ``plan`` (misfire policy, quiet hours, the processors
  still to run) → run them concurrently, each under its own timeout → ``judge`` their
  outcomes → the finisher writes the verdict.

Either way ``report`` logs and counts a verdict only once it is written. The decisions
are pure functions (``pipeline.decisions``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any

import structlog
from redis.exceptions import RedisError

from reminderd.models import Occurrence
from reminderd.pipeline.batch import Batchable, BatchRun
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
from reminderd.pipeline.finish import Finisher, Written
from reminderd.pipeline.profile import with_profile
from reminderd.pipeline.report import Report, report
from reminderd.pipeline.runtime import Context, Runtime
from reminderd.processors.budget import budget
from reminderd.storage.store import Claim

log = structlog.get_logger("reminderd.pipeline.dispatch")
Together = tuple[Claim, Prepared]


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
        self._together = BatchRun(ctx, clock)
        self._batchable = Batchable.of(ctx.runtime)
        self._group = group
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, claims: list[Claim], source: str) -> int:
        """Start processing claimed occurrences (never blocks); how many were new.

        A reload mid-way does not change what a started claim runs with.
        """
        runtime = self.ctx.runtime
        fresh = [claim for claim in claims if self.capacity.add(claim)]  # else: ours, already running
        together, alone = self._route(runtime, fresh)
        for claim, prepared in alone:
            self._start(self._guarded(runtime, claim, source, prepared))
        if together:
            self._start(self._guarded_batch(runtime, together, source))
        self.ctx.metrics.set_in_flight(len(self.capacity))
        return len(fresh)

    def _route(
        self, runtime: Runtime, claims: list[Claim]
    ) -> tuple[list[Together], list[tuple[Claim, Prepared | Dead]]]:
        """Each claim read and sent its way: with the batch (its rule is batchable) or alone."""
        if self._batchable.runtime is not runtime:
            self._batchable = Batchable.of(runtime)
        together: list[Together] = []
        alone: list[tuple[Claim, Prepared | Dead]] = []
        for claim in claims:
            prepared = prepare(claim, runtime.settings)
            if isinstance(prepared, Prepared) and prepared.occ.rule in self._batchable.rules:
                together.append((claim, prepared))
            else:
                alone.append((claim, prepared))
        return together, alone

    def _start(self, work: Coroutine[Any, Any, None]) -> None:
        task = self._group.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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

    async def _guarded_batch(self, runtime: Runtime, items: list[Together], source: str) -> None:
        try:
            await self.together(runtime, items, source)
        except asyncio.CancelledError:
            raise
        except RedisError as exc:
            # The locks lapse and the occurrences come due again: nothing lost.
            log.warning("reminder.redis_error", key=items[0][0].key, batch=len(items), error=str(exc))
        except Exception:
            log.exception("reminder.internal_error", key=items[0][0].key, batch=len(items))
        finally:
            for claim, _ in items:
                self.capacity.remove(claim)
            self.ctx.metrics.set_in_flight(len(self.capacity))

    async def together(self, runtime: Runtime, items: list[Together], source: str) -> list[Verdict]:
        """A batch of claims of batchable rules from start to finish: decide, write, report."""
        verdicts = await self._together.verdicts(runtime, items)
        claims = [claim for claim, _ in items]
        written = await self.finisher.finish_many(list(zip(claims, verdicts, strict=True)))
        out = Report.of(self.ctx, source)
        for (claim, prep), verdict, mine in zip(items, verdicts, written, strict=True):
            self._conclude(claim, verdict, prep.occ, mine, out)
        return verdicts

    async def step(self, claims: list[Claim], source: str) -> list[Verdict]:
        """Take ``claims`` to their written verdicts the ways ``submit`` would, and wait for them.

        The entry point for stepping the pipeline in process; the verdicts are in claim order.
        """
        runtime = self.ctx.runtime
        together, alone = self._route(runtime, claims)
        singles = (self._occurrence(runtime, claim, source, prepared) for claim, prepared in alone)
        batch, single = await asyncio.gather(
            self.together(runtime, together, source), asyncio.gather(*singles)
        )
        verdicts = {id(c): v for (c, _), v in zip(together, batch, strict=True)}
        verdicts.update({id(c): v for (c, _), v in zip(alone, single, strict=True)})
        return [verdicts[id(claim)] for claim in claims]

    async def _guarded(self, runtime: Runtime, claim: Claim, source: str, prepared: Prepared | Dead) -> None:
        try:
            await self._occurrence(runtime, claim, source, prepared)
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
        """One claim from start to finish on its own: decide, write the verdict, report it."""
        runtime = self.ctx.runtime
        return await self._occurrence(runtime, claim, source, prepare(claim, runtime.settings))

    async def _occurrence(
        self, runtime: Runtime, claim: Claim, source: str, prepared: Prepared | Dead
    ) -> Verdict:
        if isinstance(prepared, Dead):
            verdict: Verdict = prepared
            occ = None
        else:
            occ = prepared.occ
            verdict = await self._decide(runtime, claim, prepared)
        written = await self.finisher.finish(claim, verdict)
        self._conclude(claim, verdict, occ, written, Report.of(self.ctx, source))
        return verdict

    def _conclude(
        self, claim: Claim, verdict: Verdict, occ: Occurrence | None, mine: Written, out: Report
    ) -> None:
        """After the write: report the verdict, or say why it was not applied."""
        if isinstance(mine, RedisError):
            log.warning("reminder.redis_error", key=claim.key, occurrence=claim.occurrence, error=str(mine))
        elif not mine:
            # Paused (SIGSTOP, a stalled host) past the lease: another instance owns it now.
            dropped = type(verdict).__name__
            log.warning("lease.lost", key=claim.key, occurrence=claim.occurrence, dropped=dropped)
            self.ctx.metrics.lease_lost()
        else:
            report(out, claim, verdict, occ)
            if isinstance(verdict, Complete):
                self.fired_total += 1

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
