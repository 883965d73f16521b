"""The batch way through the pipeline: one call per processor for a claimed batch, verdicts per item."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from reminderd.errors import RetryableError
from reminderd.models import Occurrence
from reminderd.pipeline.decisions import Complete, Retry
from reminderd.processors.base import BatchResult
from tests.pipeline.harness import Batched, Pipeline, Recorder, running
from tests.pipeline.test_verdicts import config


class Scripted(Recorder):
    """A batch processor whose ``call_many`` answers with a scripted list, or raises."""

    def __init__(self, answer: list[BatchResult] | Exception | None = None, delay_s: float = 0.0) -> None:
        super().__init__()
        self.answer = answer
        self.delay_s = delay_s
        self.batches: list[list[str]] = []

    async def call_many(self, occs: Sequence[Occurrence]) -> Sequence[BatchResult]:
        """Record the batch's keys, then answer as scripted (by default: every item succeeds)."""
        self.batches.append([occ.key for occ in occs])
        await asyncio.sleep(self.delay_s)
        if isinstance(self.answer, Exception):
            raise self.answer
        return [None] * len(occs) if self.answer is None else self.answer


async def _due(p: Pipeline, count: int) -> list[str]:
    keys = [f"send_message-{user}-x" for user in range(count)]
    now = await p.now_ms()
    for key in keys:
        await p.schedule(now - 10, key=key)
    return keys


async def test_a_swept_burst_is_one_batch_call_and_every_item_completes(redis_url: str) -> None:
    """Fifty due reminders of a batchable rule reach the processor as one call and all complete."""
    proc = Scripted()
    async with running(redis_url, config(), {"rec": proc}) as p:
        keys = await _due(p, 50)
        assert await p.sweep() == 50
        assert [sorted(b) for b in proc.batches] == [sorted(keys)]
        assert proc.seen == []  # the single form was never called
        assert (await p.stats())["fired"] == 50
        assert await p.index_size() == 0
        assert len(p.intake.capacity) == 0
        assert p.dispatcher.fired_total == 50


async def test_a_failed_item_is_retried_alone(redis_url: str) -> None:
    """The exception in one item's place retries that occurrence; the others complete."""
    proc = Scripted([None, RetryableError("busy"), None])
    async with running(redis_url, config(), {"rec": proc}) as p:
        await _due(p, 3)
        verdicts = await p.step()
        assert [type(v) for v in verdicts] == [Complete, Retry, Complete]
        retry = verdicts[1]
        assert isinstance(retry, Retry)
        assert retry.error == "rec: busy"
        assert await p.index_size() == 1


async def test_a_batch_call_that_raises_retries_every_item(redis_url: str) -> None:
    """An error raised by ``call_many`` is every occurrence's failure."""
    proc = Scripted(RetryableError("down"))
    async with running(redis_url, config(), {"rec": proc}) as p:
        await _due(p, 3)
        verdicts = await p.step()
        assert all(isinstance(v, Retry) and v.error == "rec: down" for v in verdicts)
        assert (await p.stats())["retried"] == 3


async def test_a_batch_answer_of_the_wrong_length_fails_every_item(redis_url: str) -> None:
    """Results that cannot be matched to their occurrences are not guessed at: all are retried."""
    proc = Scripted([None])
    async with running(redis_url, config(), {"rec": proc}) as p:
        await _due(p, 3)
        verdicts = await p.step()
        assert all(isinstance(v, Retry) for v in verdicts)
        assert isinstance(verdicts[0], Retry)
        assert verdicts[0].error == "rec: TypeError: rec.call_many returned 1 results for 3 occurrences"


async def test_a_batch_call_past_its_timeout_retries_every_item(redis_url: str) -> None:
    """The processor's timeout bounds the whole batch call; every occurrence gets the timeout."""
    proc = Scripted(delay_s=10)
    async with running(redis_url, config(), {"rec": proc}) as p:
        p.ctx.runtime = type(p.ctx.runtime)(p.ctx.settings, p.ctx.runtime.processors, {"rec": 0.05})
        await _due(p, 2)
        verdicts = await p.step()
        assert all(isinstance(v, Retry) and v.error == "rec: timed out after 0.05s" for v in verdicts)


async def test_a_rule_with_a_single_form_processor_goes_one_task_per_occurrence(redis_url: str) -> None:
    """One processor without a batch form takes the whole rule the single way."""
    batch, single = Scripted(), Recorder()
    async with running(redis_url, config(("rec", "solo")), {"rec": batch, "solo": single}) as p:
        await _due(p, 3)
        assert await p.sweep() == 3
        assert batch.batches == []
        assert len(batch.seen) == len(single.seen) == 3


async def test_with_two_batch_processors_a_success_is_not_run_again(redis_url: str) -> None:
    """One of two processors fails the batch: the retry runs only that one, the other is marked done."""
    ok, flaky = Batched(Recorder()), Batched(Recorder(RetryableError("once")))
    async with running(redis_url, config(("ok", "flaky")), {"ok": ok, "flaky": flaky}) as p:
        [key] = await _due(p, 1)
        [first] = await p.step()
        assert isinstance(first, Retry)
        assert first.done == ("ok",)
        await p.come_due(key)
        [second] = await p.step()
        assert isinstance(second, Complete)
        assert (ok.batches, flaky.batches) == ([1], [1, 1])


class _Details(Recorder):
    async def call_many(self, occs: Sequence[Occurrence]) -> list[Mapping[str, str]]:
        return [{"n": occ.user_id} for occ in occs]


async def test_each_item_keeps_its_own_details(redis_url: str) -> None:
    """The details a batch call returns stay with their occurrences."""
    async with running(redis_url, config(), {"rec": _Details()}) as p:
        await _due(p, 3)
        verdicts = await p.step()
        details = [v.outcomes[0].detail for v in verdicts if isinstance(v, Complete)]
        assert sorted(d["n"] for d in details if d) == ["0", "1", "2"]


async def test_a_sweep_claims_a_quarter_of_the_slots_per_round_trip(redis_url: str) -> None:
    """With eight slots a sweep claims in batches of two, so one batch runs while the next is claimed."""
    proc = Scripted()
    async with running(redis_url, config(daemon={"concurrency": 8}), {"rec": proc}) as p:
        await _due(p, 8)
        assert await p.sweep() == 8
        assert [len(b) for b in proc.batches] == [2, 2, 2, 2]
