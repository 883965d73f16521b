"""Intake, capacity, drain and the subscriber, stepped in process against a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest
import redis.asyncio as aioredis

from reminderd.models import Occurrence
from reminderd.pipeline.subscriber import Subscriber
from tests.pipeline.harness import KEY, Pipeline, Recorder, key_events, running, wait_for
from tests.pipeline.test_verdicts import config


class Gate(Recorder):
    """A processor that holds every occurrence until ``opened`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.opened = asyncio.Event()

    async def __call__(self, occ: Occurrence) -> Mapping[str, str] | None:
        """Record ``occ`` and wait for the gate."""
        self.seen.append(occ)
        await self.opened.wait()
        return None


async def test_sweep_claims_no_more_than_the_free_capacity(redis_url: str) -> None:
    """With two slots, a sweep over five due reminders starts two; the rest wait in the index."""
    gate = Gate()
    async with running(redis_url, config(daemon={"concurrency": 2}), {"rec": gate}) as p:
        now = await p.now_ms()
        for user in range(5):
            await p.schedule(now - 10, key=f"send_message-{user}-x")
        assert await p.intake.sweep_once() == 2
        await wait_for(lambda: _seen(gate, 2))
        assert p.intake.capacity.free() == 0
        gate.opened.set()
        assert await p.dispatcher.drain(5) == 0
        assert p.intake.capacity.free() == 2
        assert [await p.sweep(), await p.sweep()] == [2, 1]


async def _seen(rec: Recorder, count: int) -> bool:
    return len(rec.seen) == count


async def test_drain_cancels_at_its_deadline_and_awaits_what_it_cancelled(redis_url: str) -> None:
    """A drain that runs out of time cancels the occurrence and returns only once it has ended."""
    gate = Gate()
    async with running(redis_url, config(), {"rec": gate}) as p:
        await p.schedule(await p.now_ms() - 10)
        assert await p.intake.sweep_once() == 1
        await wait_for(lambda: _seen(gate, 1))
        assert await p.dispatcher.drain(0.05) == 1
        assert len(p.intake.capacity) == 0  # the cancelled task ran its cleanup before drain returned
        assert await p.redis.exists(p.names(KEY).lock(KEY)) == 1  # its lease lapses; it comes due again
        assert await p.record() != {}


@pytest.mark.single_layout
async def test_timer_disarms_the_trigger_key_before_it_fires_the_reminder(redis_url: str) -> None:
    """The timer takes a trigger key's expiry off just before it is due (no event), then fires on time."""
    rec = Recorder()
    async with running(redis_url, config(), {"rec": rec}) as p:
        due = await p.now_ms() + 600
        await p.schedule(due)
        assert await p.redis.exists(KEY) == 1
        timer = asyncio.create_task(p.intake.run_timer())
        try:
            await wait_for(lambda: _disarmed(p, KEY))
            assert await p.now_ms() < due
            assert rec.seen == []
            await wait_for(lambda: _seen(rec, 1))
            assert rec.seen[0].fired_at_ms >= due
        finally:
            timer.cancel()


async def _disarmed(p: Pipeline, key: str) -> bool:
    """The key is alive without an expiry (disarmed), or gone already (claimed)."""
    return int(await p.redis.pttl(key)) in (-1, -2)


@pytest.mark.single_layout
async def test_timer_starts_disarming_a_large_burst_early_enough_to_finish_before_it_is_due(
    redis_url: str,
) -> None:
    """Many keys due at one instant are disarmed earlier than the horizon, by the measured delete rate."""
    async with running(redis_url, config(), {"rec": Recorder()}) as p:
        due = await p.now_ms() + 3000
        keys = [f"send_message-{user}-burst" for user in range(600)]
        for key in keys:
            await p.schedule(due, key=key)
        p.intake._disarm_per_ms = 1.0  # as if deleting took 1 ms a key: a lead of 250 + 900 ms
        timer = asyncio.create_task(p.intake.run_timer())
        try:
            await wait_for(lambda: _none_left(p, keys))
            assert await p.now_ms() < due - 1000  # the fixed horizon alone would start at due - 250
        finally:
            timer.cancel()


async def _none_left(p: Pipeline, keys: list[str]) -> bool:
    """No key of ``keys`` still has an expiry (each disarmed, or claimed already)."""
    async with p.redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.pttl(key)
        ttls = await pipe.execute()
    return all(int(ttl) < 0 for ttl in ttls)


async def test_expired_event_adopts_and_fires_a_raw_key(
    redis_url: str, pubsub_client: aioredis.Redis
) -> None:
    """A raw SET key with a TTL fires through the subscriber's hint and intake's event batch."""
    rec = Recorder()
    async with running(redis_url, config(), {"rec": rec}) as p:
        await key_events(p.redis)
        subscriber = Subscriber(pubsub_client, 0, p.ctx, p.hints)
        tasks = [asyncio.create_task(subscriber.run()), asyncio.create_task(p.intake.run_events())]
        try:
            await asyncio.wait_for(subscriber.subscribed.wait(), 5)
            await p.redis.set("send_message-7-raw", "1", px=20)
            await wait_for(lambda: _seen(rec, 1))
            assert (rec.seen[0].user_id, rec.seen[0].type) == ("7", "raw")
            assert p.hints.expired == {}
        finally:
            for task in tasks:
                task.cancel()


async def test_wake_message_and_new_connection_become_hints(
    redis_url: str, pubsub_client: aioredis.Redis
) -> None:
    """A wake message earlier than the timer's plan wakes it; a dropped subscription asks for a sweep."""
    async with running(redis_url, config(), {"rec": Recorder()}) as p:
        subscriber = Subscriber(pubsub_client, 0, p.ctx, p.hints)
        task = asyncio.create_task(subscriber.run())
        try:
            await asyncio.wait_for(subscriber.subscribed.wait(), 5)
            p.hints.planned_wake_ms = 10**15
            await p.redis.publish(p.store.names.wake, "1234")
            await asyncio.wait_for(p.hints.wake.wait(), 5)
            assert p.hints.planned_wake_ms == 1234
            await p.redis.client_kill_filter(_type="pubsub")
            await asyncio.wait_for(p.hints.reconnected.wait(), 10)
            assert p.hints.planned_wake_ms == 0
        finally:
            task.cancel()
