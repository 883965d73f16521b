"""Raw keys in the pipeline: the key's TTL stays the truth, and events are hints, never orders."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st

from reminderd.core.trigger_keys import TriggerKey, parse_key
from reminderd.models import Occurrence
from reminderd.pipeline.events import trigger_rule
from reminderd.pipeline.subscriber import Subscriber
from reminderd.storage.records import RecordField
from tests.pipeline.harness import KEY, Pipeline, Recorder, key_events, running, wait_for
from tests.pipeline.test_intake import Gate
from tests.pipeline.test_verdicts import config

pytestmark = pytest.mark.usefixtures("both_paths")


async def test_a_claim_follows_a_raw_key_whose_ttl_was_moved(redis_url: str) -> None:
    """A raw reminder due by the index whose key still lives (EXPIRE again) is re-indexed, never fired."""
    rec = Recorder()
    async with running(redis_url, config(), {"rec": rec}) as p:
        await p.raw_key(ttl_ms=5_000)
        await p.redis.pexpire(KEY, 600_000)
        await p.come_due()
        assert await p.step() == []
        assert rec.seen == []
        assert await p.redis.exists(KEY) == 1
        assert await p.due_ms() == await p.redis.pexpiretime(KEY)
        assert await p.record() != {}


async def test_a_persisted_raw_key_withdraws_its_reminder(redis_url: str) -> None:
    """A raw key made persistent (PERSIST, SET without EX) is never fired: its reminder is withdrawn."""
    rec = Recorder()
    async with running(redis_url, config(), {"rec": rec}) as p:
        await p.raw_key()
        await p.redis.persist(KEY)
        await p.come_due()
        assert await p.step() == []
        assert rec.seen == []
        assert await p.redis.get(KEY) == "1"
        assert (await p.record(), await p.due_ms()) == ({}, None)
        assert (await p.stats())["withdrawn"] == 1


async def test_a_raw_key_fires_once_it_is_gone(redis_url: str) -> None:
    """An adopted raw key fires when its key has expired, with the adoption's due time."""
    rec = Recorder()
    async with running(redis_url, config(), {"rec": rec}) as p:
        due = await p.raw_key(ttl_ms=30)
        await wait_for(lambda: _gone(p))
        await wait_for(lambda: _due(p, due))
        assert len(await p.step()) == 1
        assert [o.due_at_ms for o in rec.seen] == [due]
        assert await p.redis.exists(p.names(KEY).fired(KEY)) == 1


async def _gone(p: Pipeline, key: str = KEY) -> bool:
    return await p.redis.exists(key) == 0


async def _due(p: Pipeline, due_ms: int) -> bool:
    return await p.now_ms() >= due_ms


@pytest.mark.single_layout
async def test_disarm_leaves_raw_keys_to_their_producers(redis_url: str) -> None:
    """The timer's disarm takes the expiry off the trigger keys of API reminders only, never a raw key's."""
    async with running(redis_url, config(), {"rec": Recorder()}) as p:
        now = await p.now_ms()
        await p.schedule(now + 60_000, key="send_message-1-api")
        await p.raw_key("send_message-2-raw", ttl_ms=60_000)
        assert await p.store.disarm(now, now + 120_000) == 2
        assert await p.redis.pttl("send_message-1-api") == -1
        assert await p.redis.pttl("send_message-2-raw") > 0


async def test_a_deleted_raw_key_cancels_only_a_raw_unclaimed_reminder(redis_url: str) -> None:
    """A del event cancels a raw reminder whose key is gone; never an API one, a live key or a claimed one."""
    async with running(redis_url, config(), {"rec": Recorder()}) as p:
        now = await p.now_ms()
        keys = [f"send_message-{i}-x" for i in range(4)]
        await p.raw_key(keys[0])
        await p.raw_key(keys[1])
        await p.schedule(now + 60_000, key=keys[2])
        await p.raw_key(keys[3])
        await p.redis.delete(keys[0], keys[2], keys[3])
        await p.redis.set(p.names(keys[3]).lock(keys[3]), "other|1", px=60_000)
        assert await p.store.raw.forget(keys) == [keys[0]]
        assert await p.due_ms(keys[0]) is None
        assert all([await p.due_ms(k) for k in keys[1:]])
        assert (await p.stats())["cancelled"] == 1


async def test_del_events_of_keys_running_here_need_no_round_trip(redis_url: str) -> None:
    """A del event for a key whose occurrence runs here (its claim holds the lock) is settled locally."""
    gate = Gate()
    async with running(redis_url, config(), {"rec": gate}) as p:
        await p.raw_key(KEY, ttl_ms=60_000)
        await p.come_due()
        await p.redis.delete(KEY)  # the raw key is gone: its claim may fire it
        assert await p.intake.sweep_once() == 1
        await wait_for(lambda: _seen(gate, 1))
        p.hints.deleted.add(KEY)  # as the subscriber leaves a del event
        before = await _script_calls(p)
        assert await p.intake.events.forget_deleted_once() == 0
        assert await _script_calls(p) == before
        assert KEY not in p.hints.deleted
        gate.opened.set()


async def test_expired_events_of_raw_keys_running_here_are_not_queued(redis_url: str) -> None:
    """The expired event a raw claim raises itself (reading the gone key's expiry) is dropped
    while that occurrence runs here; an API claim's key is not dropped (it was deleted alive,
    so an event while it runs is of a new raw key)."""
    gate = Gate()
    async with running(redis_url, config(), {"rec": gate}) as p:
        await p.raw_key(KEY, ttl_ms=60_000)
        await p.come_due()
        await p.redis.delete(KEY)
        api_key = "send_message-u2-api"
        await p.schedule(await p.now_ms() - 1, key=api_key)
        assert await p.intake.sweep_once() == 2
        assert len(p.intake.capacity) == 2  # both run, held at the gate
        p.hints.key_expired(KEY)  # as the subscriber leaves an expired event
        p.hints.key_expired(api_key)
        assert (KEY in p.hints.expired, api_key in p.hints.expired) == (False, True)
        assert p.hints.expired_in_flight == 1
        gate.opened.set()
        await wait_for(lambda: _fired_count(p, 2))
        p.hints.key_expired(KEY)  # once it has ended, an event is queued again
        assert KEY in p.hints.expired


async def test_during_a_backlog_expired_events_leave_indexed_keys_to_the_sweep(redis_url: str) -> None:
    """While the sweep's claims come back full, an expired event waits (0.4 of the dedupe window)
    for the sweep to claim its key; the sweep drops it, and one still queued then is claimed."""
    rec = Recorder()
    async with running(redis_url, config(daemon={"raw_dedupe_window": "2s"}), {"rec": rec}) as p:
        p.hints.swept(full=True)  # as a sweep that found more due work than it could claim
        started = time.monotonic()
        assert await p.expired(KEY) == 0  # a key never seen alive: waited for the sweep first
        assert 0.75 <= time.monotonic() - started < 3
        assert KEY in p.hints.expired
        assert await p.expired(KEY, age_s=0.85) == 1  # waited its share, not stale: claimed from its event
        assert len(rec.seen) == 1
        p.hints.expired["send_message-9-young"] = time.monotonic()  # waits for the sweep
        p.hints.urgent.set()
        waiting = asyncio.create_task(p.intake.events.claim_expired_once())
        await wait_for(lambda: _urgent_cleared(p))  # it waits now
        started = time.monotonic()
        p.hints.written.add("send_message-8-late")  # its write not adopted yet: not in the index
        p.hints.keys_expired(["send_message-8-late"])
        assert await asyncio.wait_for(waiting, 3) == 0  # woken at once, not after the deferral
        assert await p.intake.events.claim_expired_once() == 1  # so not held back
        assert time.monotonic() - started < 0.5
        assert "send_message-9-young" in p.hints.expired
        p.hints.swept(full=False)  # the index is drained: events are claimed at once again
        assert await p.expired("send_message-7-other") == 2  # with the young one still queued


async def _urgent_cleared(p: Pipeline) -> bool:
    return not p.hints.urgent.is_set()


async def _fired_count(p: Pipeline, count: int) -> bool:
    return (await p.stats()).get("fired", 0) == count


async def _script_calls(p: Pipeline) -> int:
    stats = await p.redis.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval"))


async def test_an_expired_event_for_a_live_key_adopts_it_at_its_real_expiry(redis_url: str) -> None:
    """A forged (or late) expired event for a live key never fires it early: it is adopted at its TTL."""
    rec = Recorder()
    async with running(redis_url, config(), {"rec": rec}) as p:
        await p.redis.set(KEY, '{"a":1}', px=600_000)
        assert await p.expired(KEY) == 0
        assert rec.seen == []
        assert await p.redis.exists(KEY) == 1
        assert await p.due_ms() == await p.redis.pexpiretime(KEY)
        assert (await p.record())[RecordField.PAYLOAD] == '{"a":1}'


async def test_an_expired_event_for_a_live_indexed_raw_key_is_not_obeyed(redis_url: str) -> None:
    """A forged expired event for an adopted raw key due later neither fires it nor deletes its key."""
    rec = Recorder()
    async with running(redis_url, config(), {"rec": rec}) as p:
        due = await p.raw_key(ttl_ms=600_000)
        assert await p.expired(KEY) == 0
        assert (rec.seen, await p.redis.exists(KEY), await p.due_ms()) == ([], 1, due)


@pytest.mark.parametrize(("unseen_raw", "fired"), [("fire", 1), ("never", 0)])
async def test_a_raw_key_never_seen_alive_follows_its_rules_choice(
    redis_url: str, unseen_raw: str, fired: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """An event for a gone key never adopted fires under ``unseen_raw: fire``; under never it is lost."""
    rec = Recorder()
    async with running(redis_url, config(rule={"unseen_raw": unseen_raw}), {"rec": rec}) as p:
        assert await p.expired("send_message-666-forged") == fired
        assert len(rec.seen) == fired
        lost = "reminder.lost" in capsys.readouterr().out
        assert lost is (fired == 0)


async def test_a_stale_event_that_cannot_be_proven_is_reported_lost(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An expired event queued over half the dedupe window, with no ledger, is logged lost with its key."""
    rec = Recorder()
    async with running(redis_url, config(), {"rec": rec}) as p:
        assert await p.expired("send_message-5-late", age_s=3600) == 0
        out = capsys.readouterr().out
        assert all(word in out for word in ("reminder.lost", "send_message-5-late", "stale_event"))
        assert rec.seen == []


async def test_an_event_proven_fired_by_the_ledger_is_dropped(redis_url: str) -> None:
    """A late expired event for a one-shot that fired (ledger present) fires nothing again."""
    rec = Recorder()
    async with running(redis_url, config(), {"rec": rec}) as p:
        await p.schedule(await p.now_ms() - 10)
        await p.step()
        assert await p.expired(KEY, age_s=3600) == 0
        assert await p.expired(KEY) == 0
        assert len(rec.seen) == 1


class Resetter(Recorder):
    """A processor during whose run the producer writes the raw key again."""

    def __init__(self, client: aioredis.Redis) -> None:
        super().__init__()
        self.client = client

    async def __call__(self, occ: Occurrence) -> dict[str, str] | None:
        """Write the key again with a fresh TTL, then succeed."""
        self.seen.append(occ)
        await self.client.set(occ.key, "1", px=60_000)
        return None


async def test_a_raw_key_written_again_while_it_fires_is_a_new_reminder(redis_url: str) -> None:
    """A raw key re-set while its occurrence runs is not marked fired but adopted as a new reminder."""
    async with running(redis_url, config(), {"rec": Recorder()}) as p:
        p.ctx.runtime = type(p.ctx.runtime)(p.ctx.settings, {"rec": Resetter(p.redis)}, {"rec": 5.0})
        due = await p.raw_key(ttl_ms=20)
        await wait_for(lambda: _gone(p))
        await wait_for(lambda: _due(p, due))
        await p.step()
        assert await p.redis.exists(p.names(KEY).fired(KEY)) == 0
        assert list(p.hints.written) == [KEY]
        assert await p.intake.events.adopt_written_once() == 1
        assert await p.due_ms() == await p.redis.pexpiretime(KEY)


async def test_key_events_adopt_move_and_cancel_a_raw_key(
    redis_url: str, pubsub_client: aioredis.Redis
) -> None:
    """Through the subscriber: SET ... EX indexes the key at its expiry, EXPIRE moves it, DEL cancels it."""
    async with running(redis_url, config(), {"rec": Recorder()}) as p:
        await key_events(p.redis)
        subscriber = Subscriber(pubsub_client, 0, p.ctx, p.hints)
        tasks = [asyncio.create_task(subscriber.run()), asyncio.create_task(p.intake.run_events())]
        try:
            await asyncio.wait_for(subscriber.subscribed.wait(), 5)
            await p.redis.set(KEY, "1", ex=600)
            await wait_for(lambda: _indexed_at_expiry(p))
            await p.redis.expire(KEY, 900)
            await wait_for(lambda: _indexed_at_expiry(p))
            await p.redis.delete(KEY)
            await wait_for(lambda: _not_indexed(p))
            assert await p.record() == {}
        finally:
            for task in tasks:
                task.cancel()


async def _indexed_at_expiry(p: Pipeline) -> bool:
    return await p.due_ms() == await p.redis.pexpiretime(KEY)


async def _not_indexed(p: Pipeline) -> bool:
    return await p.due_ms() is None


PREFIXES = ("send", "send-message", "send_message")
NAME_PART = st.text(st.sampled_from([*"ab-_ .:\t\x00\x1fé💥", "\u2003"]), max_size=8)


@given(st.sampled_from(["", *PREFIXES]), NAME_PART, NAME_PART)
def test_the_fast_rule_check_agrees_with_parse_key(prefix: str, user: str, type_: str) -> None:
    """trigger_rule, which spares most names parse_key's cost, decides every name as parse_key does."""
    name = f"{prefix}-{user}-{type_}" if prefix else f"{user}-{type_}"
    parsed = parse_key(name, PREFIXES)
    assert trigger_rule(name, PREFIXES) == (parsed.rule if isinstance(parsed, TriggerKey) else "")


async def test_a_new_subscription_after_a_lost_one_is_a_gap(
    redis_url: str, pubsub_client: aioredis.Redis
) -> None:
    """A subscription made again on a new connection (not only redis-py's silent one) asks for a full pass."""
    async with running(redis_url, config(), {"rec": Recorder()}) as p:
        subscriber = Subscriber(pubsub_client, 0, p.ctx, p.hints)
        expected = {"a", "b"}
        gaps = []
        for _connection in range(2):
            confirmed: set[str] = set()  # each connection confirms its channels afresh
            for channel in sorted(expected):
                subscriber._on_subscribe(channel, confirmed, expected)
            gaps.append(p.hints.gap.is_set())
        assert gaps == [False, True]


async def test_raw_keys_fire_on_expired_events_where_only_ex_is_set(
    redis_url: str, pubsub_client: aioredis.Redis
) -> None:
    """Where the flags stay Ex (CONFIG refused, K never set), a raw key still fires on its expired event."""
    rec = Recorder()
    async with running(redis_url, config(), {"rec": rec}) as p:
        await p.redis.config_set("notify-keyspace-events", "Ex")
        subscriber = Subscriber(pubsub_client, 0, p.ctx, p.hints)
        tasks = [asyncio.create_task(subscriber.run()), asyncio.create_task(p.intake.run_events())]
        try:
            await asyncio.wait_for(subscriber.subscribed.wait(), 5)
            await p.redis.set("send_message-8-exonly", "1", px=20)
            await wait_for(lambda: _seen(rec, 1))
        finally:
            for task in tasks:
                task.cancel()


async def _seen(rec: Recorder, count: int) -> bool:
    return len(rec.seen) == count
