"""The one finish path: every verdict carried out in batches, one round trip per batch.

A drain of 20 000 due reminders is dominated by round trips; finishing them one call
each would cost more than the claims. Each caller awaits its own verdicts' write (one
wait for a whole batch of them), so a failure to write is never silent. A batch that
fails on a Redis error is sent again with backoff, except its retries: it is unknown
whether they were applied, and applying one twice would count the attempt twice, so
their occurrences get the error (their leases lapse and they come due again, as after a
crash).
"""

from __future__ import annotations

import asyncio
from typing import assert_never

import structlog
from redis.exceptions import RedisError

from reminderd.pipeline.decisions import Complete, Dead, Defer, Retry, Skip, Verdict
from reminderd.pipeline.hints import Hints
from reminderd.pipeline.runtime import Context
from reminderd.storage.store import RESET, Claim, Completion, DeadLetterRequest, Deferral, FinishItem, Store
from reminderd.storage.store import Retry as RetryRequest

log = structlog.get_logger("reminderd.pipeline.finish")
Written = bool | RedisError
"""Per verdict: whether it was still ours and applied, or the error it could not be written with."""


class _Waiter:
    """One caller's verdicts: the results as they are written, and one future for all of them."""

    __slots__ = ("future", "left", "results")

    def __init__(self, n: int) -> None:
        self.future: asyncio.Future[list[Written]] = asyncio.get_running_loop().create_future()
        self.results: list[Written] = [False] * n
        self.left = n

    def set(self, index: int, result: Written) -> None:
        self.results[index] = result
        self.left -= 1
        if self.left == 0 and not self.future.done():
            self.future.set_result(self.results)


_Item = tuple[Claim, Verdict, _Waiter, int]


class Finisher:
    """Collects verdicts and writes them together (up to ``max_batch`` a round trip)."""

    def __init__(self, ctx: Context, hints: Hints, *, max_batch: int = 500) -> None:
        self.ctx = ctx  # settings read at each write: a reload may change the fired-marker window
        self.store: Store = ctx.store
        self.instance = ctx.instance
        self.hints = hints
        self.max_batch = max_batch
        self._pending: list[_Item] = []
        self._wakeup = asyncio.Event()

    async def finish(self, claim: Claim, verdict: Verdict) -> bool:
        """Queue the verdict on ``claim`` and wait until it is written; whether it was still ours.

        False when the lease lapsed and another instance (or our own later claim) took the
        occurrence over: nothing was written, the new owner's verdict is the one that counts.
        """
        (result,) = await self.finish_many([(claim, verdict)])
        if isinstance(result, RedisError):
            raise result
        return result

    async def finish_many(self, verdicts: list[tuple[Claim, Verdict]]) -> list[Written]:
        """Queue a batch of verdicts and wait until all are written; per verdict, as ``finish``
        says, or the Redis error a retry could not be written with."""
        if not verdicts:
            return []
        waiter = _Waiter(len(verdicts))
        self._pending += [(claim, verdict, waiter, i) for i, (claim, verdict) in enumerate(verdicts)]
        self._wakeup.set()
        return await waiter.future

    async def run(self) -> None:
        """Flush loop; runs until cancelled, then flushes what is left."""
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                await asyncio.sleep(0)  # let the other finishers of this tick join the batch
                await self.flush()
        finally:
            await asyncio.shield(self.flush())

    async def flush(self) -> None:
        """Write everything pending, batch by batch."""
        while self._pending:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            await self._write(batch)

    async def _write(self, batch: list[_Item]) -> None:
        delay_s = 0.05
        results: list[int] = []
        while batch:
            try:
                window_ms = self.ctx.settings.daemon.raw_dedupe_window_ms
                items = _finish_items(batch)
                results = await self.store.finish_many(self.instance, items, fired_window_ms=window_ms)
                break
            except RedisError as exc:
                log.warning("redis.complete_failed", error=str(exc), retry_in_s=delay_s, batch=len(batch))
                batch = _without_retries(batch, exc)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 2.0)
        for (claim, verdict, waiter, index), result in zip(batch, results, strict=True):
            if result == RESET:  # the raw key was written again while it ran: a new reminder
                self.hints.written.add(claim.key)
            mine = bool(result)
            if mine and isinstance(verdict, Complete) and verdict.next_due_ms is not None:
                self.hints.due_at(verdict.next_due_ms)
            waiter.set(index, mine)


def _finish_items(batch: list[_Item]) -> list[FinishItem]:
    """The store's shapes for a batch of verdicts, in the batch's order."""
    return [_finish_item(claim, verdict) for claim, verdict, _, _ in batch]


def _finish_item(claim: Claim, verdict: Verdict) -> FinishItem:
    member, occ = claim.member, claim.occurrence
    match verdict:
        case Complete(next_due_ms=nxt):
            return Completion(member, occ, nxt)
        case Skip(next_due_ms=nxt):
            return Completion(member, occ, nxt, stat="skipped")
        case Defer(until_ms=until):
            return Deferral(member, occ, until)
        case Retry():
            return RetryRequest(member, occ, verdict.at_ms, verdict.error, verdict.done)
        case Dead():
            return DeadLetterRequest(
                member, occ, verdict.reason, verdict.error, verdict.done, verdict.pending, verdict.next_due_ms
            )
        case _:
            assert_never(verdict)


def _without_retries(batch: list[_Item], exc: RedisError) -> list[_Item]:
    """The batch less its retries, whose occurrences are told of ``exc`` instead."""
    kept = []
    for item in batch:
        if isinstance(item[1], Retry):
            item[2].set(item[3], exc)
        else:
            kept.append(item)
    return kept
