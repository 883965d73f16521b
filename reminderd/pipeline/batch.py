"""A batch of claims carried to its verdicts together: one task, one timeout per processor.

A burst arrives as claim replies of up to ``daemon.sweep_batch`` occurrences. When every
processor of an occurrence's rule offers a batch form (``BatchProcessor``: the built-in
``log`` and ``stream``, any plugin that chooses to) and the rule reads no user profile,
the occurrence need not be a task of its own: the batch is planned value by value, each
processor is called once for all of it under one timeout, and each occurrence is judged
by its own outcomes. The verdicts are the ones the single path would reach: the same
``plan`` and ``judge``, only fewer tasks, timers and futures.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from reminderd.config.model import RuleSettings
from reminderd.models import Occurrence
from reminderd.pipeline.clock import RedisClock
from reminderd.pipeline.decisions import Outcome, Prepared, Run, Verdict, judge, outcome_of, plan
from reminderd.pipeline.profile import lookups
from reminderd.pipeline.runtime import Context, Runtime
from reminderd.processors.base import BatchProcessor, BatchResult
from reminderd.processors.budget import budget
from reminderd.storage.store import Claim


@dataclass(frozen=True, slots=True)
class Batchable:
    """Which rules of one runtime go the batch way (computed once per runtime)."""

    runtime: Runtime
    rules: frozenset[str]

    @classmethod
    def of(cls, runtime: Runtime) -> Batchable:
        """The rules whose processors all offer ``call_many`` and that read no profile."""
        rules = runtime.settings.rules
        return cls(runtime, frozenset(name for name, rule in rules.items() if _batchable(runtime, rule)))


def _batchable(runtime: Runtime, rule: RuleSettings) -> bool:
    procs = runtime.processors
    every = all(isinstance(procs.get(name), BatchProcessor) for name in rule.processors)
    return every and not lookups(rule, runtime.settings)


class BatchRun:
    """Plans, runs and judges a batch of prepared claims of batchable rules."""

    def __init__(self, ctx: Context, clock: RedisClock) -> None:
        self.ctx = ctx
        self.clock = clock

    async def verdicts(self, runtime: Runtime, items: Sequence[tuple[Claim, Prepared]]) -> list[Verdict]:
        """The verdict on each item, in order."""
        settings = runtime.settings
        verdicts: list[Verdict | None] = []
        groups: dict[tuple[str, ...], list[int]] = {}
        runs: dict[int, Run] = {}
        for i, (claim, prep) in enumerate(items):
            step = plan(claim, prep.occ, prep.rule, settings)
            if isinstance(step, Run):
                runs[i] = step
                groups.setdefault(step.pending, []).append(i)
                verdicts.append(None)
            else:
                verdicts.append(step)
        for pending, indexes in groups.items():
            chosen = [items[i] for i in indexes]
            outcomes = await self._run(runtime, chosen, pending)
            now = self.clock.now_ms()
            for i, per_item in zip(indexes, outcomes, strict=True):
                rule = items[i][1].rule
                verdicts[i] = judge(per_item, runs[i], rule.retry or settings.retry, now)
        return [v for v in verdicts if v is not None]

    async def _run(
        self, runtime: Runtime, items: list[tuple[Claim, Prepared]], pending: tuple[str, ...]
    ) -> list[list[Outcome]]:
        """Each item's outcomes, one per processor of ``pending`` (processors run concurrently)."""
        if len(pending) == 1:
            per_proc = [await self._call_many(runtime, pending[0], items, False)]
        else:
            calls = (self._call_many(runtime, p, items, True) for p in pending)
            per_proc = list(await asyncio.gather(*calls))
        return [list(row) for row in zip(*per_proc, strict=True)]

    async def _call_many(
        self, runtime: Runtime, name: str, items: list[tuple[Claim, Prepared]], mark: bool
    ) -> list[Outcome]:
        """One batch call under the processor's timeout; an error it raises fails every item.

        With ``mark``, each success is recorded as soon as the call returns, so a retry or a
        crash recovery does not run this processor again while the others still run.
        """
        occs = [prep.occ for _, prep in items]
        started = time.perf_counter()
        timeout_s = runtime.timeouts_s[name]
        proc = runtime.processors[name]
        assert isinstance(proc, BatchProcessor)
        results: Sequence[BatchResult]
        try:
            async with budget(timeout_s):
                results = await proc.call_many(occs)
            if len(results) != len(occs):
                got, want = len(results), len(occs)
                raise TypeError(f"{name}.call_many returned {got} results for {want} occurrences")
        except Exception as exc:
            results = [exc] * len(occs)
        plain = Outcome(name, True)  # outcomes are values: one serves every item without details
        outcomes = [plain if r is None else _outcome(name, r, timeout_s) for r in results]
        self._count(name, occs, outcomes, time.perf_counter() - started)
        if mark:
            await self._mark(items, name, outcomes)
        return outcomes

    def _count(self, name: str, occs: list[Occurrence], outcomes: list[Outcome], took_s: float) -> None:
        """Metrics once per batch: a counter step per rule, one duration per batch call."""
        metrics = self.ctx.metrics
        ok: Counter[str] = Counter()
        failed: Counter[str] = Counter()
        for occ, outcome in zip(occs, outcomes, strict=True):
            (ok if outcome.ok else failed)[occ.rule] += 1
        for rule, n in ok.items():
            metrics.fired(rule, name, n)
        for rule, n in failed.items():
            metrics.failed(rule, name, n)
        for rule in ok.keys() | failed.keys():
            metrics.observe_processor_duration(rule, name, took_s)

    async def _mark(self, items: list[tuple[Claim, Prepared]], name: str, outcomes: list[Outcome]) -> None:
        store, instance = self.ctx.store, self.ctx.instance
        marks = [
            store.mark_done(instance, claim, name)
            for (claim, _), outcome in zip(items, outcomes, strict=True)
            if outcome.ok
        ]
        await asyncio.gather(*marks)


def _outcome(name: str, result: BatchResult, timeout_s: float) -> Outcome:
    if isinstance(result, Exception):
        return outcome_of(name, result, timeout_s)
    return Outcome(name, True, detail=result)
