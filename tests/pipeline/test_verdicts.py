"""Verdicts through the in-process pipeline: what each one leaves in Redis."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from reminderd.api.deadletters import DeadLetters
from reminderd.core.schedules import Every
from reminderd.errors import Deferred, PermanentError, RetryableError
from reminderd.models import Misfire
from reminderd.pipeline.decisions import Complete, Dead, Defer, Retry, Skip
from tests.pipeline.harness import KEY, Recorder, running, wait_for

pytestmark = pytest.mark.usefixtures("both_paths")

MINUTE_MS = 60_000


def config(processors: tuple[str, ...] = ("rec",), **sections: Any) -> str:
    """YAML for namespace ``t`` whose one rule runs ``processors`` (each a ``log`` processor by config)."""
    rule = {"processors": list(processors), **sections.pop("rule", {})}
    data = {
        "namespace": "t",
        "processors": {name: {"type": "log"} for name in processors},
        "rules": {"send_message": rule},
        **sections,
    }
    return yaml.safe_dump(data)


async def test_one_shot_completes_and_leaves_a_fired_marker(redis_url: str) -> None:
    """A due one-shot runs its processor once; the record and index entry go, a fired marker stays."""
    rec = Recorder()
    async with running(redis_url, config(), {"rec": rec}) as p:
        await p.schedule(await p.now_ms() - 10)
        [verdict] = await p.step()
        assert verdict == Complete(None, verdict.outcomes)
        assert [o.name for o in verdict.outcomes] == ["rec"]
        assert [(o.key, o.occurrence, o.attempt) for o in rec.seen] == [(KEY, 1, 1)]
        assert await p.record() == {}
        assert await p.due_ms() is None
        assert await p.redis.exists(p.names(KEY).fired(KEY)) == 1
        assert (await p.stats())["fired"] == 1


async def test_recurring_reminder_is_rearmed_with_its_trigger_key(redis_url: str) -> None:
    """A recurring occurrence that succeeds is re-armed: next due time, next occurrence, trigger key."""
    async with running(redis_url, config(), {"rec": Recorder()}) as p:
        now = await p.now_ms()
        await p.schedule(now - 10, Every(MINUTE_MS, now - 10))
        p.hints.planned_wake_ms = now + 10 * MINUTE_MS  # the timer sleeps past the next due time
        [verdict] = await p.step()
        assert verdict == Complete(now - 10 + MINUTE_MS, verdict.outcomes)
        record = await p.record()
        assert (record["d"], record["o"], record["a"]) == (str(now - 10 + MINUTE_MS), "2", "0")
        assert await p.due_ms() == now - 10 + MINUTE_MS
        assert 0 < await p.redis.pttl(KEY) <= MINUTE_MS
        assert p.hints.wake.is_set()
        assert p.hints.planned_wake_ms == now - 10 + MINUTE_MS


@pytest.mark.parametrize(
    ("policy", "fires"),
    [(Misfire.SKIP, False), (Misfire.FIRE_ONCE, True), (Misfire.FIRE_ALL, True)],
)
async def test_misfire_policy_decides_a_missed_occurrence(
    redis_url: str, policy: Misfire, fires: bool
) -> None:
    """Ten minutes late, a minutely reminder is skipped, fired once, or fired and walked forward one step."""
    rec = Recorder()
    cfg = config(rule={"misfire": policy.value}, daemon={"misfire_grace": "1s"})
    async with running(redis_url, cfg, {"rec": rec}) as p:
        now = await p.now_ms()
        nominal = now - 10 * MINUTE_MS
        await p.schedule(nominal, Every(MINUTE_MS, nominal))
        assert await p.sweep() == 1
        next_due = await p.due_ms()
        assert next_due is not None
        assert len(rec.seen) == (1 if fires else 0)
        stats = await p.stats()
        if policy is Misfire.SKIP:
            assert stats.get("skipped") == 1
            assert "fired" not in stats
            assert now - 1000 <= next_due <= now + MINUTE_MS
        elif policy is Misfire.FIRE_ONCE:
            assert stats["fired"] == 1
            assert next_due > now
        else:
            assert stats["fired"] == 1
            assert next_due == nominal + MINUTE_MS


async def test_skip_verdict_carries_the_next_due_time(redis_url: str) -> None:
    """The skip verdict names the next due time it re-arms for; no processor runs."""
    rec = Recorder()
    cfg = config(rule={"misfire": "skip"}, daemon={"misfire_grace": "1s"})
    async with running(redis_url, cfg, {"rec": rec}) as p:
        nominal = await p.now_ms() - 5 * MINUTE_MS
        await p.schedule(nominal, Every(MINUTE_MS, nominal))
        [verdict] = await p.step()
        assert isinstance(verdict, Skip)
        assert verdict.next_due_ms == await p.due_ms()
        assert rec.seen == []


async def test_the_rules_own_retry_policy_decides_when_to_give_up(redis_url: str) -> None:
    """With a global limit of five attempts, a rule allowing two dead-letters after the second failure."""
    rec = Recorder(RetryableError("503"), RetryableError("503 again"))
    retry = {"max_attempts": 2, "backoff": "50ms", "jitter": 0}
    cfg = config(rule={"retry": retry}, retry={"max_attempts": 5})
    async with running(redis_url, cfg, {"rec": rec}) as p:
        await p.schedule(await p.now_ms() - 10)
        [first] = await p.step()
        assert isinstance(first, Retry)
        assert first.attempt == 1
        record = await p.record()
        assert (record["a"], record["e"], record["d"]) == ("1", "rec: 503", str(first.at_ms))
        assert await p.due_ms() == first.at_ms
        [second] = await wait_for(p.step)
        assert second == Dead("attempts_exhausted", "rec: 503 again", (), ("rec",), None)
        [(_, letter)] = await p.dead()
        assert (letter["reason"], letter["attempts"], letter["processors"]) == (
            "attempts_exhausted",
            "2",
            "rec",
        )
        assert [o.attempt for o in rec.seen] == [1, 2]
        assert await p.record() == {}


async def test_backoff_grows_and_is_capped(redis_url: str) -> None:
    """Retries come due after the backoff, doubled for the next attempt but never beyond backoff_max."""
    rec = Recorder(RetryableError("a"), RetryableError("b"), RetryableError("c"))
    cfg = config(retry={"max_attempts": 9, "backoff": "100ms", "backoff_max": "150ms", "jitter": 0})
    async with running(redis_url, cfg, {"rec": rec}) as p:
        await p.schedule(await p.now_ms() - 10)
        delays = []
        for _ in range(3):
            [verdict] = await wait_for(p.step)
            assert isinstance(verdict, Retry)
            delays.append(verdict.at_ms - p.intake.clock.now_ms())
            assert await p.due_ms() == verdict.at_ms
        assert 80 <= delays[0] <= 100
        assert 130 <= delays[1] <= 150
        assert 130 <= delays[2] <= 150


async def test_retry_after_is_a_floor_for_the_backoff(redis_url: str) -> None:
    """A provider's Retry-After longer than the backoff sets the retry's due time."""
    rec = Recorder(RetryableError("429", retry_after_s=30))
    async with running(redis_url, config(retry={"backoff": "1s", "jitter": 0}), {"rec": rec}) as p:
        await p.schedule(await p.now_ms() - 10)
        [verdict] = await p.step()
        assert isinstance(verdict, Retry)
        assert 29_000 <= verdict.at_ms - await p.now_ms() <= 30_000


async def test_rate_limit_defers_without_using_an_attempt(redis_url: str) -> None:
    """A processor saying "not now" moves the occurrence later; the attempt count stays at zero."""
    rec = Recorder(Deferred("bucket empty", retry_after_s=5))
    async with running(redis_url, config(), {"rec": rec}) as p:
        nominal = await p.now_ms() - 10
        await p.schedule(nominal)
        [verdict] = await p.step()
        assert isinstance(verdict, Defer)
        assert (verdict.reason, verdict.processors) == ("rate_limit", ("rec",))
        record = await p.record()
        assert (record.get("a", "0"), record["d"], record["n"]) == ("0", str(verdict.until_ms), str(nominal))
        assert 4000 <= verdict.until_ms - await p.now_ms() <= 5000


async def test_permanent_failure_dead_letters_and_the_schedule_goes_on(redis_url: str) -> None:
    """A permanent failure dead-letters the occurrence at once; a recurring reminder moves to its next one."""
    rec = Recorder(PermanentError("bad number", code="21211"))
    async with running(redis_url, config(), {"rec": rec}) as p:
        now = await p.now_ms()
        await p.schedule(now - 10, Every(MINUTE_MS, now - 10))
        [verdict] = await p.step()
        assert verdict == Dead(
            "permanent_failure", "rec: bad number (code 21211)", (), ("rec",), now - 10 + MINUTE_MS
        )
        assert (await p.record())["o"] == "2"
        assert await p.due_ms() == now - 10 + MINUTE_MS
        [(_, letter)] = await p.dead()
        assert (letter["key"], letter["occurrence"], letter["reason"]) == (KEY, "1", "permanent_failure")


async def test_replayed_dead_letter_runs_only_the_processors_that_had_not_finished(redis_url: str) -> None:
    """A replayed dead letter fires its occurrence again; a processor that had finished does not run twice."""
    first, second = Recorder(), Recorder(PermanentError("down"))
    async with running(redis_url, config(("a", "b")), {"a": first, "b": second}) as p:
        await p.schedule(await p.now_ms() - 10)
        [dead] = await p.step()
        assert dead == Dead("permanent_failure", "b: down", ("a",), ("b",), None)
        [(entry_id, _)] = await p.dead()
        await DeadLetters(p.redis, p.store.names, p.store).replay(entry_id)
        [verdict] = await p.step()
        assert isinstance(verdict, Complete)
        assert [o.name for o in verdict.outcomes] == ["b"]
        assert (len(first.seen), [o.occurrence for o in second.seen]) == (1, [1, 1])
        assert await p.dead() == []
        assert await p.record() == {}


async def test_a_key_no_rule_owns_and_a_poison_payload_are_dead_lettered(redis_url: str) -> None:
    """A claim the pipeline cannot read is dead-lettered with its reason instead of run."""
    rec = Recorder()
    async with running(redis_url, config(), {"rec": rec}) as p:
        now = await p.now_ms()
        await p.schedule(now - 10, key="other_app-1-x")
        await p.schedule(now - 10)
        await p.redis.hset(p.names(KEY).record(KEY), mapping={"d": now - 10, "o": 1, "p": "{not json"})
        verdicts = await p.step()
        assert sorted(v.reason for v in verdicts if isinstance(v, Dead)) == ["no_rule", "poison_payload"]
        assert sorted(f["reason"] for _, f in await p.dead()) == ["no_rule", "poison_payload"]
        assert rec.seen == []


async def test_one_batch_writes_every_kind_of_verdict(redis_url: str) -> None:
    """Claims finished in the same tick, each with a different verdict, are all written as judged."""
    replies: dict[str, Exception | None] = {
        "ok": None,
        "retry": RetryableError("x"),
        "dead": PermanentError("y"),
        "later": Deferred("z", retry_after_s=9),
    }

    class ByType(Recorder):
        async def __call__(self, occ: Any) -> Any:
            self.replies = [replies[occ.type]]
            return await super().__call__(occ)

    async with running(redis_url, config(), {"rec": ByType()}) as p:
        now = await p.now_ms()
        for kind in replies:
            await p.schedule(now - 10, key=f"send_message-1-{kind}")
        verdicts = await p.step()
        assert sorted(type(v).__name__ for v in verdicts) == ["Complete", "Dead", "Defer", "Retry"]
        assert await p.record("send_message-1-ok") == {}
        assert (await p.record("send_message-1-retry"))["a"] == "1"
        assert [f["key"] for _, f in await p.dead()] == ["send_message-1-dead"]
        assert await p.due_ms("send_message-1-later") == next(
            v.until_ms for v in verdicts if isinstance(v, Defer)
        )
        locks = [p.names(f"send_message-1-{kind}").lock(f"send_message-1-{kind}") for kind in replies]
        assert await p.redis.exists(*locks) == 0
