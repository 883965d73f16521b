"""The atomic store scripts against a real redis-server: schedule, claim, complete, fail, and the rest."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from reminderd.core.schedules import Cron, Every, Once, Schedule
from reminderd.errors import PayloadError
from reminderd.models import Misfire
from reminderd.storage.layout import Layout
from reminderd.storage.names import Names
from reminderd.storage.store import (
    AUX_SEP,
    Adoption,
    Claim,
    Completion,
    DeadLetterRequest,
    ReplayRequest,
    Retry,
    ScheduleRequest,
    Store,
    encode_payload,
)
from tests.pipeline.harness import wait_for

WINDOW_MS = 5_000
KEY = "send_message-42-daily"
# The store contract holds on both layouts: one shard with trigger keys written by the
# scripts (one Redis), and four tagged shards with trigger keys written around them (the
# Cluster layout, whose code path runs on a standalone server too: hash tags are legal).
LAYOUTS = {"single": Layout.single("t"), "sharded": Layout("t", 4, inline_triggers=False)}


class LayoutNames:
    """The names of the test's layout, each of the shard of the key it names (index, stats
    and dead letters: the shard of ``KEY``, the one most tests are about)."""

    layout = LAYOUTS["single"]

    def of(self, member: str) -> Names:
        """The names of ``member``'s shard."""
        return self.layout.names_of(member)

    def record(self, member: str) -> str:
        """The record of ``member``."""
        return self.of(member).record(member)

    def lock(self, member: str) -> str:
        """The lock of ``member``."""
        return self.of(member).lock(member)

    @property
    def namespace(self) -> str:
        """The namespace."""
        return self.layout.namespace

    def aux(self, key: str) -> str:
        """The aux set of ``key``."""
        return self.of(key).aux(key)

    def fired(self, key: str) -> str:
        """The fired marker of ``key``."""
        return self.of(key).fired(key)

    def due_of(self, member: str) -> str:
        """The due index of ``member``'s shard."""
        return self.of(member).due

    @property
    def due(self) -> str:
        """The due index of ``KEY``'s shard."""
        return self.of(KEY).due

    @property
    def stats(self) -> str:
        """The stats of ``KEY``'s shard."""
        return self.of(KEY).stats

    @property
    def dead(self) -> str:
        """The dead letters of ``KEY``'s shard."""
        return self.of(KEY).dead

    @property
    def wake(self) -> str:
        """The wake channel (daemon-wide)."""
        return self.layout.names.wake

    @property
    def inline(self) -> bool:
        """Whether the scripts write trigger keys themselves (the single layout)."""
        return self.layout.inline_triggers


NAMES = LayoutNames()


@pytest.fixture(autouse=True, params=list(LAYOUTS))
def layout(request: pytest.FixtureRequest) -> Iterator[Layout]:
    """Every test of the module on each layout."""
    NAMES.layout = LAYOUTS[request.param]
    try:
        yield NAMES.layout
    finally:
        NAMES.layout = LAYOUTS["single"]


@pytest.fixture
def store(r: aioredis.Redis) -> Store:
    """A store in namespace ``t``."""
    return Store(r, NAMES.layout)


async def redis_now(r: aioredis.Redis) -> int:
    """Redis's clock in epoch milliseconds."""
    sec, usec = await r.time()
    return int(sec) * 1000 + int(usec) // 1000


async def index_size(r: aioredis.Redis) -> int:
    """Entries in the index, over every shard."""
    return sum([await r.zcard(names.due) for names in NAMES.layout.shard_names])


async def wait_past(r: aioredis.Redis, due_ms: int) -> None:
    """Wait until Redis's clock is past ``due_ms``."""

    async def passed() -> bool:
        return await redis_now(r) > due_ms

    await wait_for(passed)


async def dead_letters(r: aioredis.Redis) -> list[tuple[str, dict[str, str]]]:
    """Every entry of the dead-letter stream as (id, fields)."""
    rows: list[tuple[str, dict[str, str]]] = await r.xrange(NAMES.dead)  # type: ignore[assignment]
    return rows


def req(key: str, due_ms: int, schedule: Schedule | None = None, **kw: Any) -> ScheduleRequest:
    """A schedule request; a one-shot at ``due_ms`` unless a schedule is given."""
    return ScheduleRequest(key=key, due_at_ms=due_ms, schedule=schedule or Once(due_ms), **kw)


async def fail(store: Store, instance: str, item: Retry | DeadLetterRequest) -> int:
    """``Store.fail`` with the test's fired-marker window."""
    return await store.fail(instance, item, fired_window_ms=WINDOW_MS)


def replay_of(entry_id: str, dead: dict[str, str], now: int, *, aux: bool) -> ReplayRequest:
    """The replay of dead letter ``entry_id`` (fields ``dead``) as a one-shot due ``now``."""
    return ReplayRequest(
        KEY,
        tag=f"replay:{entry_id}",
        due_at_ms=now,
        nominal_ms=int(dead["due"]),
        occurrence=int(dead["occurrence"]),
        payload_json=dead["payload"],
        done=tuple(d for d in dead["done"].split(",") if d),
        dead_id=entry_id,
        aux=aux,
    )


async def claim_one(store: Store, instance: str = "A", lease_ms: int = 60_000) -> Claim:
    """Claim exactly one due occurrence."""
    claims = (await store.claim_due(instance, limit=10, lease_ms=lease_ms)).claims
    assert len(claims) == 1
    return claims[0]


async def keys_claimed(store: Store, instance: str, keys: list[str], *, fire: bool = True) -> list[Claim]:
    """Claim ``keys`` as an expired-event batch would (unseen raw keys fire when ``fire``)."""
    got = await store.claim_keys(instance, keys, lease_ms=60_000, fire_unseen=fire, payload_max_bytes=16_384)
    return got.claims


async def due_claimed(store: Store, key: str, due_ms: int, **kw: Any) -> Claim:
    """Schedule ``key`` at a past ``due_ms`` and claim it as instance A."""
    await store.schedule(req(key, due_ms, **kw))
    return await claim_one(store)


# -- schedule ---------------------------------------------------------------------------


async def test_schedule_writes_trigger_key_and_index(store: Store, r: aioredis.Redis) -> None:
    """A plain one-shot gets a trigger key expiring at its due time and an index entry, no record."""
    due = await redis_now(r) + 60_000
    assert await store.schedule(req(KEY, due)) == 1
    pttl = await r.pttl(KEY)
    assert 58_000 < pttl <= 60_000
    assert await r.get(KEY) == "1"
    assert not await r.exists(NAMES.record(KEY))
    assert await r.zscore(NAMES.due, KEY) == due
    found = await store.get(KEY)
    assert found is not None
    assert (found.due_at_ms, found.occurrence, found.schedule, found.payload) == (due, 1, Once(due), {})


async def test_replacing_a_plain_one_shot_continues_its_numbering(store: Store, r: aioredis.Redis) -> None:
    """A record-less one-shot replaced by another is occurrence 2, now with a record to say so."""
    due = await redis_now(r) + 60_000
    assert await store.schedule(req(KEY, due)) == 1
    assert await store.schedule(req(KEY, due + 1000)) == 2
    assert await r.hgetall(NAMES.record(KEY)) == {"d": str(due + 1000), "o": "2"}
    assert await store.schedule(req(KEY, due, only_if_absent=True)) is None


async def test_a_reminder_of_the_previous_encoding_fires(store: Store, r: aioredis.Redis) -> None:
    """A one-shot written before records became optional (record ``d``, ``o``) is claimed and finished."""
    now = await redis_now(r)
    await r.hset(NAMES.record(KEY), mapping={"d": str(now - 10), "o": "1"})
    await r.zadd(NAMES.due, {KEY: now - 10})
    claim = await claim_one(store)
    assert (claim.due_at_ms, claim.occurrence) == (now - 10, 1)
    assert await store.complete_many("A", [Completion(KEY, 1, None)], fired_window_ms=WINDOW_MS) == 1
    assert not await r.exists(NAMES.record(KEY), NAMES.lock(KEY))
    assert await r.zcard(NAMES.due) == 0


async def test_schedule_stores_payload_schedule_and_misfire(store: Store, r: aioredis.Redis) -> None:
    """Payload, a recurring schedule and a misfire policy are stored; ``{}`` stores no payload."""
    due = await redis_now(r) + 60_000
    await store.schedule(req(KEY, due, Every(1000, due), payload_json='{"a":1}', misfire=Misfire.SKIP))
    rec = await r.hgetall(NAMES.record(KEY))
    assert rec == {
        "d": str(due),
        "o": "1",
        "p": '{"a":1}',
        "s": f'{{"every":1000,"anchor":{due}}}',
        "m": "skip",
    }
    await store.schedule(req("send_message-1-x", due, payload_json="{}"))
    assert "p" not in await r.hgetall(NAMES.record("send_message-1-x"))


async def test_schedule_replace_continues_numbering(store: Store, r: aioredis.Redis) -> None:
    """Replacing a reminder bumps the occurrence, drops every old field and the old lock."""
    now = await redis_now(r)
    await due_claimed(store, KEY, now - 10, payload_json='{"a":1}', misfire=Misfire.SKIP)
    await r.hset(NAMES.record(KEY), mapping={"a": "2", "f": "sms", "e": "boom"})
    due = now + 60_000
    assert await store.schedule(req(KEY, due, Cron("0 9 * * *", "UTC"))) == 2
    assert await r.hgetall(NAMES.record(KEY)) == {
        "d": str(due),
        "o": "2",
        "s": '{"cron":"0 9 * * *","tz":"UTC"}',
    }
    assert not await r.exists(NAMES.lock(KEY))
    assert await r.zscore(NAMES.due, KEY) == due
    assert await store.schedule(req(KEY, due)) == 3


async def test_only_if_absent_keeps_existing_record(store: Store, r: aioredis.Redis) -> None:
    """``only_if_absent`` returns None and leaves an existing reminder untouched."""
    due = await redis_now(r) + 60_000
    await store.schedule(req(KEY, due, payload_json='{"a":1}'))
    assert await store.schedule(req(KEY, due + 5000, only_if_absent=True)) is None
    assert await r.hgetall(NAMES.record(KEY)) == {"d": str(due), "o": "1", "p": '{"a":1}'}
    assert await r.zscore(NAMES.due, KEY) == due


async def test_only_if_absent_respects_raw_trigger_key(store: Store, r: aioredis.Redis) -> None:
    """A raw trigger key written by a producer counts as present: nothing is written."""
    await r.set(KEY, "raw", px=60_000)
    due = await redis_now(r) + 5000
    assert await store.schedule(req(KEY, due, only_if_absent=True)) is None
    assert await r.get(KEY) == "raw"
    assert await r.pttl(KEY) > 55_000
    assert not await r.exists(NAMES.record(KEY))
    assert await r.zscore(NAMES.due, KEY) is None


async def test_schedule_in_the_past_writes_no_trigger_key(store: Store, r: aioredis.Redis) -> None:
    """A due time already passed is indexed (so it fires at once) but gets no trigger key."""
    await r.set(KEY, "1", px=60_000)
    await r.set(NAMES.fired(KEY), "1", px=60_000)
    due = await redis_now(r) - 1000
    assert await store.schedule(req(KEY, due)) == 1
    assert not await r.exists(KEY)
    assert not await r.exists(NAMES.fired(KEY))
    assert await r.zscore(NAMES.due, KEY) == due


async def test_schedule_publishes_wake_only_for_a_new_earliest(store: Store, r: aioredis.Redis) -> None:
    """The wake channel hears a due time only when it is earlier than every indexed one."""
    pubsub = r.pubsub()
    await pubsub.subscribe(NAMES.wake)
    now = await redis_now(r)

    async def next_message() -> str:
        async def got() -> Any:
            return await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.05)

        msg = await wait_for(got)
        return str(msg["data"])

    try:  # one hash tag: one shard, whose earliest counts (each shard wakes below its own)
        await store.schedule(req("send_message-{1}-a", now + 10_000))
        assert await next_message() == str(now + 10_000)
        await store.schedule(req("send_message-{1}-b", now + 20_000))  # later: silent
        await store.schedule(req("send_message-{1}-a", now + 15_000))  # later than itself: silent
        await store.schedule(req("send_message-{1}-c", now + 5_000))
        assert await next_message() == str(now + 5_000)
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]


# -- cancel -----------------------------------------------------------------------------


async def test_cancel_removes_trigger_record_index_and_lock(store: Store, r: aioredis.Redis) -> None:
    """Cancel deletes everything of a reminder, the lock of a claimed occurrence included."""
    await due_claimed(store, KEY, await redis_now(r) - 10)
    await r.set(KEY, "1", px=60_000)
    assert await r.exists(NAMES.lock(KEY))
    assert await store.cancel(KEY) is True
    assert not await r.exists(KEY, NAMES.record(KEY), NAMES.lock(KEY))
    assert await r.zscore(NAMES.due, KEY) is None


async def test_cancel_future_reminder_and_unknown_key(store: Store, r: aioredis.Redis) -> None:
    """Cancel removes a pending trigger key and returns False for a key never scheduled."""
    await store.schedule(req(KEY, await redis_now(r) + 60_000))
    assert await store.cancel(KEY) is True
    assert not await r.exists(KEY, NAMES.record(KEY))
    assert await store.cancel(KEY) is False
    assert await store.cancel("send_message-9-none") is False


# -- claim ------------------------------------------------------------------------------


async def test_claim_due_takes_only_due_entries_up_to_limit(store: Store, r: aioredis.Redis) -> None:
    """Only entries due by Redis TIME are claimed, at most ``limit`` per call."""
    now = await redis_now(r)
    for i in range(5):
        await store.schedule(req(f"send_message-{i}-past", now - 100 + i))
    await store.schedule(req("send_message-9-future", now + 60_000))
    first = (await store.claim_due("A", limit=3, lease_ms=60_000)).claims
    second = (await store.claim_due("A", limit=3, lease_ms=60_000)).claims
    third = (await store.claim_due("A", limit=3, lease_ms=60_000)).claims
    if NAMES.inline:
        assert [c.key for c in first] == [f"send_message-{i}-past" for i in range(3)]
        assert [c.key for c in second] == ["send_message-3-past", "send_message-4-past"]
    else:  # over shards: up to the limit, earliest first within each shard only
        assert (len(first), len(second)) == (3, 2)
        assert sorted(c.key for c in first + second) == [f"send_message-{i}-past" for i in range(5)]
    assert third == []
    assert await r.exists("send_message-9-future")


async def test_claim_waits_for_redis_time(store: Store, r: aioredis.Redis) -> None:
    """An entry due a moment from now is not claimed early, and is claimed once Redis TIME passes it."""
    due = await redis_now(r) + 300
    await store.schedule(req(KEY, due))
    claimed = await store.claim_due("A", limit=10, lease_ms=60_000)
    redis_ms, early = claimed.now_ms, claimed.claims
    assert redis_ms < due
    assert early == []
    assert await keys_claimed(store, "A", [KEY]) == []
    await wait_past(r, due)
    claimed = await store.claim_due("A", limit=10, lease_ms=60_000)
    redis_ms, claims = claimed.now_ms, claimed.claims
    assert [c.key for c in claims] == [KEY]
    assert claims[0].now_ms >= due
    assert (
        claims[0].now_ms == redis_ms if NAMES.inline else redis_ms >= claims[0].now_ms
    )  # the latest shard's


async def test_claim_returns_record_and_moves_score_to_lease(store: Store, r: aioredis.Redis) -> None:
    """A claim deletes the trigger key, scores the entry at now + lease and returns the record."""
    now = await redis_now(r)
    sched = Every(60_000, now - 500)
    await store.schedule(req(KEY, now - 500, sched, payload_json='{"a":1}', misfire=Misfire.FIRE_ALL))
    await r.hset(NAMES.record(KEY), mapping={"a": "2", "f": "sms,log", "n": str(now - 900)})
    await r.set(KEY, "1", px=60_000)
    claimed = await store.claim_due("A", limit=10, lease_ms=30_000)
    redis_ms, claims = claimed.now_ms, claimed.claims
    (c,) = claims
    assert c == Claim(
        member=KEY,
        due_at_ms=now - 500,
        nominal_due_ms=now - 900,
        occurrence=1,
        attempts=2,
        payload_json='{"a":1}',
        schedule=sched,
        misfire=Misfire.FIRE_ALL,
        done=("sms", "log"),
        raw=False,
        now_ms=c.now_ms,
    )
    # The claim's own clock; a reply over several shards carries the latest shard's.
    assert now <= c.now_ms <= redis_ms
    assert await r.zscore(NAMES.due, KEY) == c.now_ms + 30_000
    if NAMES.inline:
        assert not await r.exists(KEY)
        assert await r.get(NAMES.lock(KEY)) == "A|1|q"  # the trigger key was alive: no expired event of it
    else:  # a key expiring at another time than the claimed due one is a producer's: kept
        assert await r.pexpiretime(KEY) > now + 50_000
        assert await r.get(NAMES.lock(KEY)) == "A|1"
    assert 29_000 < await r.pttl(NAMES.lock(KEY)) <= 30_000


async def test_claim_of_a_record_less_entry_writes_its_record(store: Store, r: aioredis.Redis) -> None:
    """A due entry without a record is a plain one-shot at its score; its claim records the due
    time (the score moves to the lease's end), so a lapsed lease re-delivers the same occurrence."""
    due = await redis_now(r) - 10
    await r.zadd(NAMES.due, {KEY: due, f"{KEY}{AUX_SEP}replay:1": due})
    (claim,) = (await store.claim_due("A", limit=10, lease_ms=50)).claims
    assert (claim.member, claim.due_at_ms, claim.occurrence, claim.schedule) == (KEY, due, 1, Once(due))
    assert await r.hgetall(NAMES.record(KEY)) == {"d": str(due), "o": "1"}
    assert await r.zcard(NAMES.due) == 1  # an auxiliary entry never lacks a record: dropped
    await wait_past(r, claim.now_ms + 50)
    (again,) = (await store.claim_due("B", limit=10, lease_ms=60_000)).claims
    assert (again.due_at_ms, again.occurrence) == (due, 1)


async def test_second_claim_while_lease_holds_gets_nothing(store: Store, r: aioredis.Redis) -> None:
    """While the lease holds, neither the sweep nor an expired event claims the occurrence again."""
    await due_claimed(store, KEY, await redis_now(r) - 10)
    assert (await store.claim_due("B", limit=10, lease_ms=60_000)).claims == []
    assert await keys_claimed(store, "B", [KEY]) == []


async def test_claim_again_after_lease_lapses(store: Store, r: aioredis.Redis) -> None:
    """After a crash the same occurrence comes due again once its short lease lapses."""
    await store.schedule(req(KEY, await redis_now(r) - 10))
    first = (await store.claim_due("A", limit=10, lease_ms=100)).claims

    async def reclaim() -> list[Claim]:
        return (await store.claim_due("B", limit=10, lease_ms=60_000)).claims

    again = await wait_for(reclaim)
    assert [(c.key, c.occurrence) for c in again] == [(KEY, first[0].occurrence)]
    assert await r.get(NAMES.lock(KEY)) == "B|1"


async def test_claim_keys_ignores_entries_not_yet_due(store: Store, r: aioredis.Redis) -> None:
    """An expired event for a reminder rescheduled to later claims nothing."""
    await store.schedule(req(KEY, await redis_now(r) + 60_000))
    assert await keys_claimed(store, "A", [KEY]) == []
    assert not await r.exists(NAMES.lock(KEY))


# -- concurrency ------------------------------------------------------------------------


async def test_racing_claims_take_each_occurrence_exactly_once(redis_url: str, r: aioredis.Redis) -> None:
    """50 tasks on their own connections racing claim_due and claim_keys claim 1 000 entries once each."""
    now = await redis_now(r)
    members = [f"send_message-{i}-race" for i in range(1000)]
    await Store(r, NAMES.layout).schedule_many(req(m, now - 1000 + i % 500) for i, m in enumerate(members))
    taken: list[tuple[str, int]] = []

    async def worker(n: int) -> None:
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        store = Store(client, NAMES.layout)
        rng = random.Random(n)
        try:
            while True:
                by_keys = await keys_claimed(store, f"w{n}", rng.sample(members, 20), fire=False)
                by_due = (await store.claim_due(f"w{n}", limit=7, lease_ms=60_000)).claims
                taken.extend((c.member, c.occurrence) for c in by_keys + by_due)
                if not by_due:
                    return
        finally:
            await client.aclose()

    await asyncio.gather(*(worker(n) for n in range(50)))
    counts = Counter(taken)
    assert len(counts) == 1000
    assert set(counts.values()) == {1}


async def test_racing_completions_apply_only_the_lock_holders(redis_url: str, r: aioredis.Redis) -> None:
    """Two instances completing the same claims concurrently: only the holder's completions apply."""
    now = await redis_now(r)
    members = [f"send_message-{i}-done" for i in range(200)]
    await Store(r, NAMES.layout).schedule_many(req(m, now - 10, Every(60_000, now - 10)) for m in members)
    claims = (await Store(r, NAMES.layout).claim_due("A", limit=500, lease_ms=60_000)).claims
    assert len(claims) == 200
    next_due = now + 60_000 - 10
    items = [Completion(c.member, c.occurrence, next_due) for c in claims]
    clients = [aioredis.Redis.from_url(redis_url, decode_responses=True) for _ in range(2)]
    a, b = (Store(c, NAMES.layout) for c in clients)
    chunks = [items[i : i + 20] for i in range(0, 200, 20)]
    try:
        results = await asyncio.gather(
            *(a.complete_many("A", ch, fired_window_ms=WINDOW_MS) for ch in chunks),
            *(b.complete_many("B", ch, fired_window_ms=WINDOW_MS) for ch in chunks),
        )
    finally:
        for c in clients:
            await c.aclose()
    assert sum(results[: len(chunks)]) == 200
    assert sum(results[len(chunks) :]) == 0
    for m in members[:5]:
        assert await r.hget(NAMES.record(m), "o") == "2"


# -- claim_keys and raw keys ------------------------------------------------------------


async def test_claim_keys_adopts_an_unknown_raw_key(store: Store, r: aioredis.Redis) -> None:
    """An expired event for a raw key with no record creates a raw one-shot and claims it."""
    claimed = await store.claim_keys("A", [KEY], lease_ms=60_000, fire_unseen=True, payload_max_bytes=1000)
    redis_ms, claims = claimed.now_ms, claimed.claims
    (c,) = claims
    assert (c.key, c.occurrence, c.attempts, c.payload_json, c.done, c.raw) == (KEY, 1, 0, "", (), True)
    assert c.due_at_ms == c.nominal_due_ms == redis_ms
    assert c.schedule == Once(redis_ms)
    assert await r.hgetall(NAMES.record(KEY)) == {"d": str(redis_ms), "o": "1", "r": "1"}
    assert await r.zscore(NAMES.due, KEY) == redis_ms + 60_000


async def test_claim_keys_respects_fired_marker(store: Store, r: aioredis.Redis) -> None:
    """A duplicate expired event after a one-shot finished is not taken for a new raw key."""
    claim = await due_claimed(store, KEY, await redis_now(r) - 10)
    await store.complete_many(
        "A", [Completion(claim.member, claim.occurrence, None)], fired_window_ms=WINDOW_MS
    )
    assert await r.exists(NAMES.fired(KEY))
    assert await keys_claimed(store, "A", [KEY]) == []
    assert not await r.exists(NAMES.record(KEY))
    assert await r.zscore(NAMES.due, KEY) is None


async def test_claim_keys_without_adoption_ignores_raw_keys(store: Store, r: aioredis.Redis) -> None:
    """With ``fire_unseen=False, payload_max_bytes=16_384`` an unknown key is neither recorded nor claimed."""
    assert await keys_claimed(store, "A", [KEY], fire=False) == []
    assert not await r.exists(NAMES.record(KEY))
    assert await r.zcard(NAMES.due) == 0


# -- complete ---------------------------------------------------------------------------


async def test_complete_one_shot_deletes_and_marks_fired(store: Store, r: aioredis.Redis) -> None:
    """A finished one-shot loses record and index entry and leaves a fired marker for the window."""
    claim = await due_claimed(store, KEY, await redis_now(r) - 10)
    assert (
        await store.complete_many("A", [Completion(KEY, claim.occurrence, None)], fired_window_ms=WINDOW_MS)
        == 1
    )
    assert not await r.exists(NAMES.record(KEY), NAMES.lock(KEY), KEY)
    assert await r.zscore(NAMES.due, KEY) is None
    assert WINDOW_MS - 1000 < await r.pttl(NAMES.fired(KEY)) <= WINDOW_MS
    assert await r.hget(NAMES.stats, "fired") == "1"


async def test_complete_recurring_rearms(store: Store, r: aioredis.Redis) -> None:
    """A recurring reminder moves to its next occurrence: fields reset, index and trigger re-armed."""
    now = await redis_now(r)
    claim = await due_claimed(store, KEY, now - 10, schedule=Every(60_000, now - 10), payload_json='{"a":1}')
    await r.hset(NAMES.record(KEY), mapping={"a": "3", "f": "sms", "e": "boom", "n": str(now - 20)})
    nxt = now + 60_000 - 10
    assert (
        await store.complete_many(
            "A", [Completion(KEY, claim.occurrence, nxt)], stat="skipped", fired_window_ms=WINDOW_MS
        )
        == 1
    )
    rec = await r.hgetall(NAMES.record(KEY))
    assert rec == {
        "d": str(nxt),
        "o": "2",
        "a": "0",
        "p": '{"a":1}',
        "s": f'{{"every":60000,"anchor":{now - 10}}}',
    }
    assert await r.zscore(NAMES.due, KEY) == nxt
    assert await r.pexpiretime(KEY) == nxt
    assert not await r.exists(NAMES.lock(KEY), NAMES.fired(KEY))
    assert await r.hget(NAMES.stats, "skipped") == "1"


async def test_complete_ignores_a_replaced_occurrence(store: Store, r: aioredis.Redis) -> None:
    """A completion for an occurrence replaced meanwhile by a new schedule changes nothing."""
    now = await redis_now(r)
    claim = await due_claimed(store, KEY, now - 10)
    await store.schedule(req(KEY, now + 60_000, payload_json='{"new":1}'))
    assert (
        await store.complete_many("A", [Completion(KEY, claim.occurrence, None)], fired_window_ms=WINDOW_MS)
        == 0
    )
    assert await r.hgetall(NAMES.record(KEY)) == {"d": str(now + 60_000), "o": "2", "p": '{"new":1}'}
    assert await r.exists(KEY)
    assert not await r.exists(NAMES.fired(KEY))


async def test_complete_from_non_holder_is_ignored(store: Store, r: aioredis.Redis) -> None:
    """An instance that does not hold the lock cannot complete the occurrence."""
    claim = await due_claimed(store, KEY, await redis_now(r) - 10)
    assert (
        await store.complete_many("B", [Completion(KEY, claim.occurrence, None)], fired_window_ms=WINDOW_MS)
        == 0
    )
    assert await r.exists(NAMES.record(KEY))
    assert await r.get(NAMES.lock(KEY)) == "A|1"
    assert await r.hget(NAMES.stats, "fired") is None


# -- fail -------------------------------------------------------------------------------


async def test_fail_schedules_a_retry(store: Store, r: aioredis.Redis) -> None:
    """A retry counts the attempt, moves due time and index, keeps nominal and done, frees the lock."""
    now = await redis_now(r)
    claim = await due_claimed(store, KEY, now - 10)
    assert await fail(store, "A", Retry(KEY, claim.occurrence, now + 5000, "boom", ("sms",))) == 1
    rec = await r.hgetall(NAMES.record(KEY))
    assert rec == {"d": str(now + 5000), "n": str(now - 10), "o": "1", "a": "1", "f": "sms", "e": "boom"}
    assert await r.zscore(NAMES.due, KEY) == now + 5000
    assert not await r.exists(NAMES.lock(KEY))
    assert await fail(store, "A", Retry(KEY, claim.occurrence, now + 9000, "again")) == 1
    rec = await r.hgetall(NAMES.record(KEY))
    assert (rec["a"], rec["f"], rec["n"], rec["e"]) == ("2", "sms", str(now - 10), "again")
    assert await r.hget(NAMES.stats, "retried") == "2"


async def test_fail_dead_letters_a_one_shot(store: Store, r: aioredis.Redis) -> None:
    """A dead letter carries every field; the one-shot is then deleted with a fired marker."""
    now = await redis_now(r)
    claim = await due_claimed(store, KEY, now - 10, payload_json='{"a":1}')
    item = DeadLetterRequest(
        KEY, claim.occurrence, "permanent_failure", "sms: 400", ("log",), ("sms", "hook")
    )
    res = await fail(store, "A", item)
    assert res == 2
    ((_, fields),) = await dead_letters(r)
    assert now <= int(fields.pop("dead_at")) <= await redis_now(r)
    assert fields == {
        "key": KEY,
        "occurrence": "1",
        "reason": "permanent_failure",
        "error": "sms: 400",
        "attempts": "1",
        "processors": "sms,hook",
        "done": "log",
        "payload": '{"a":1}',
        "due": str(now - 10),
    }
    assert not await r.exists(NAMES.record(KEY), NAMES.lock(KEY))
    assert await r.zscore(NAMES.due, KEY) is None
    assert await r.exists(NAMES.fired(KEY))
    assert await r.hget(NAMES.stats, "dead") == "1"


async def test_fail_dead_letters_and_rearms_a_recurring(store: Store, r: aioredis.Redis) -> None:
    """A recurring reminder whose occurrence is dead-lettered continues with the next one."""
    now = await redis_now(r)
    claim = await due_claimed(store, KEY, now - 10, schedule=Every(60_000, now - 10))
    nxt = now + 60_000 - 10
    item = DeadLetterRequest(KEY, claim.occurrence, "attempts_exhausted", "x", (), ("sms",), nxt)
    res = await fail(store, "A", item)
    assert res == 2
    rec = await r.hgetall(NAMES.record(KEY))
    assert (rec["d"], rec["o"], rec["a"]) == (str(nxt), "2", "0")
    assert "e" not in rec
    assert "f" not in rec
    assert await r.pexpiretime(KEY) == nxt
    assert await r.zscore(NAMES.due, KEY) == nxt
    ((_, fields),) = await dead_letters(r)
    assert (fields["payload"], fields["due"], fields["done"]) == ("{}", str(now - 10), "")


async def test_fail_from_non_holder_or_stale_occurrence_is_ignored(store: Store, r: aioredis.Redis) -> None:
    """Fail changes nothing for another instance's lock or a replaced occurrence."""
    now = await redis_now(r)
    claim = await due_claimed(store, KEY, now - 10)
    dead = DeadLetterRequest(KEY, claim.occurrence, "r", "x")
    assert await fail(store, "B", Retry(KEY, claim.occurrence, now + 1000, "x")) == 0
    assert await fail(store, "B", dead) == 0
    await store.schedule(req(KEY, now + 60_000))
    assert await fail(store, "A", dead) == 0
    assert await r.xlen(NAMES.dead) == 0
    assert await r.hget(NAMES.record(KEY), "o") == "2"


# -- mark_done, defer, renew ------------------------------------------------------------


async def test_mark_done_appends_processor_names(store: Store, r: aioredis.Redis) -> None:
    """Finished processors accumulate in ``f``; another instance or a replaced occurrence cannot add."""
    now = await redis_now(r)
    claim = await due_claimed(store, KEY, now - 10)
    assert await store.mark_done("A", claim, "sms") is True
    assert await store.mark_done("A", claim, "hook") is True
    assert await r.hget(NAMES.record(KEY), "f") == "sms,hook"
    assert await store.mark_done("B", claim, "log") is False
    await store.schedule(req(KEY, now + 60_000))
    assert await store.mark_done("A", claim, "log") is False
    assert await r.hget(NAMES.record(KEY), "f") is None


async def test_defer_keeps_occurrence_and_nominal(store: Store, r: aioredis.Redis) -> None:
    """Defer moves due time, index and trigger key but keeps occurrence and nominal due time."""
    now = await redis_now(r)
    claim = await due_claimed(store, KEY, now - 10)
    assert await store.defer("A", claim, now + 30_000) is True
    assert await r.hgetall(NAMES.record(KEY)) == {"d": str(now + 30_000), "n": str(now - 10), "o": "1"}
    assert await r.zscore(NAMES.due, KEY) == now + 30_000
    assert await r.pexpiretime(KEY) == now + 30_000
    assert not await r.exists(NAMES.lock(KEY))
    assert await store.defer("A", claim, now + 40_000) is True
    assert await r.hget(NAMES.record(KEY), "n") == str(now - 10)


async def test_defer_refuses_foreign_or_stale_claims(store: Store, r: aioredis.Redis) -> None:
    """Defer is refused for another instance's lock and for a replaced occurrence."""
    now = await redis_now(r)
    claim = await due_claimed(store, KEY, now - 10)
    assert await store.defer("B", claim, now + 30_000) is False
    await store.schedule(req(KEY, now + 60_000))
    assert await store.defer("A", claim, now + 30_000) is False
    assert await r.hget(NAMES.record(KEY), "d") == str(now + 60_000)


async def test_renew_extends_only_own_leases(store: Store, r: aioredis.Redis) -> None:
    """Renew extends lock and index score of our own claims and ignores others."""
    claim = await due_claimed(store, KEY, await redis_now(r) - 10)
    pair = [(claim.member, claim.occurrence)]
    assert await store.renew("B", pair, 120_000) == 0
    assert await r.pttl(NAMES.lock(KEY)) <= 60_000
    before = await redis_now(r)
    assert await store.renew("A", [*pair, ("send_message-1-none", 1)], 120_000) == 1
    assert 119_000 < await r.pttl(NAMES.lock(KEY)) <= 120_000
    score = await r.zscore(NAMES.due, KEY)
    assert score is not None
    assert before + 120_000 <= score <= await redis_now(r) + 120_000
    assert await r.zscore(NAMES.due_of("send_message-1-none"), "send_message-1-none") is None


# -- adopt and repair -------------------------------------------------------------------


async def test_adopt_records_raw_keys_with_ttl(store: Store, r: aioredis.Redis) -> None:
    """Raw string keys with a TTL become raw records; a JSON object value becomes the payload."""
    await r.set("send_message-1-json", '{"text":"hi"}', px=60_000)
    await r.set("send_message-2-plain", "1", px=30_000)
    await r.set("send_message-3-badjson", "{nope", px=30_000)
    await r.set("send_message-4-array", "[1,2]", px=30_000)
    await r.set("send_message-5-forever", "1")
    await r.rpush("send_message-6-list", "x")
    await r.pexpire("send_message-6-list", 60_000)
    await store.schedule(req("send_message-7-known", await redis_now(r) + 60_000))
    before = await redis_now(r)
    keys = [f"send_message-{i}-{t}" for i, t in enumerate(["json", "plain", "badjson", "array"], 1)]
    others = ["send_message-5-forever", "send_message-6-list", "send_message-8-gone"]
    found = await store.raw.adopt([*keys, *others, "send_message-7-known"], payload_max_bytes=1000)
    assert found == Adoption(adopted=4, known=1, other=3, oversized=())
    json_rec = await r.hgetall(NAMES.record(keys[0]))
    assert json_rec["p"] == '{"text":"hi"}'
    assert (json_rec["o"], json_rec["r"]) == ("1", "1")
    assert before + 59_000 < int(json_rec["d"]) <= await redis_now(r) + 60_000
    assert await r.zscore(NAMES.due_of(keys[0]), keys[0]) == int(json_rec["d"])
    for k in keys[1:]:
        assert "p" not in await r.hgetall(NAMES.record(k))
    for k in others:
        assert not await r.exists(NAMES.record(k))
        assert await r.zscore(NAMES.due_of(k), k) is None
    assert await r.hget(NAMES.record("send_message-7-known"), "r") is None


async def test_claims_of_raw_keys_read_back_what_adoption_wrote(store: Store, r: aioredis.Redis) -> None:
    """A raw key adopted without a payload is claimed as a short row (its due time alone), one
    with a JSON payload as a full row; both claims are raw, with the due time of the key."""
    await r.set("send_message-1-plain", "1", px=50)
    await r.set("send_message-2-json", '{"a":1}', px=50)
    await store.raw.adopt(["send_message-1-plain", "send_message-2-json"], payload_max_bytes=1000)
    dues = {
        k: int(await r.hget(NAMES.record(k), "d") or 0)
        for k in ("send_message-1-plain", "send_message-2-json")
    }
    await wait_past(r, max(dues.values()) + 5)
    claims = {c.member: c for c in (await store.claim_due("A", limit=10, lease_ms=30_000)).claims}
    for key, payload in (("send_message-1-plain", ""), ("send_message-2-json", '{"a":1}')):
        c = claims[key]
        assert (c.raw, c.payload_json, c.occurrence, c.attempts) == (True, payload, 1, 0)
        assert (c.due_at_ms, c.nominal_due_ms, c.schedule) == (dues[key], dues[key], Once(dues[key]))
        assert await r.get(NAMES.lock(key)) == "A|1|r"


async def test_repair_recreates_trigger_keys(store: Store, r: aioredis.Redis) -> None:
    """Repair re-creates vanished future trigger keys, of a record-less entry too (due at its score)."""
    now = await redis_now(r)
    await store.schedule(req("send_message-1-lost", now + 60_000))
    await store.schedule(req("send_message-2-kept", now + 60_000))
    await store.schedule(req("send_message-3-past", now - 10))
    await r.delete("send_message-1-lost")
    await r.zadd(NAMES.due_of("send_message-4-orphan"), {"send_message-4-orphan": now + 5000})
    members = ["send_message-1-lost", "send_message-2-kept", "send_message-3-past", "send_message-4-orphan"]
    assert await store.repair(members) == 2
    assert await r.pexpiretime("send_message-1-lost") == now + 60_000
    assert not await r.exists("send_message-3-past")
    assert await r.pexpiretime("send_message-4-orphan") == now + 5000
    assert await index_size(r) == 4


# -- replay -----------------------------------------------------------------------------


async def _dead_letter(
    store: Store, r: aioredis.Redis, schedule: Schedule | None, due: int
) -> tuple[str, dict[str, str]]:
    """Dead-letter the occurrence of ``KEY`` due at ``due``; its stream id and fields."""
    claim = await due_claimed(store, KEY, due, schedule=schedule, payload_json='{"a":1}')
    await store.mark_done("A", claim, "log")
    nxt = None if schedule is None else due + 60_000
    await fail(store, "A", DeadLetterRequest(KEY, claim.occurrence, "r", "e", ("log",), ("sms",), nxt))
    ((entry_id, fields),) = await dead_letters(r)
    return entry_id, fields


async def test_replay_as_one_shot_replaces_and_deletes_dead_letter(store: Store, r: aioredis.Redis) -> None:
    """A replayed dead letter is a one-shot due now with its occurrence and done list, claimable."""
    now = await redis_now(r)
    entry_id, dead = await _dead_letter(store, r, None, now - 50)
    await store.replay(replay_of(entry_id, dead, now, aux=False))
    assert await r.xlen(NAMES.dead) == 0
    rec = await r.hgetall(NAMES.record(KEY))
    assert rec == {"d": str(now), "n": str(now - 50), "o": "1", "p": '{"a":1}', "f": "log"}
    claim = await claim_one(store)
    assert (claim.key, claim.occurrence, claim.done, claim.nominal_due_ms) == (KEY, 1, ("log",), now - 50)


async def test_replay_as_auxiliary_member_keeps_recurring_record(store: Store, r: aioredis.Redis) -> None:
    """An auxiliary replay gets its own member and leaves the re-armed recurring reminder alone."""
    now = await redis_now(r)
    entry_id, dead = await _dead_letter(store, r, Every(60_000, now - 50), now - 50)
    recurring = await r.hgetall(NAMES.record(KEY))
    expiry = await r.pexpiretime(KEY)
    member = f"{KEY}{AUX_SEP}replay:{entry_id}"
    await store.replay(replay_of(entry_id, dead, now, aux=True))
    assert await r.xlen(NAMES.dead) == 0
    assert await r.hgetall(NAMES.record(KEY)) == recurring
    assert await r.pexpiretime(KEY) == expiry
    assert await r.hgetall(NAMES.record(member)) == {
        "d": str(now),
        "n": str(now - 50),
        "o": "1",
        "p": '{"a":1}',
        "f": "log",
    }
    assert not await r.exists("")
    claim = await claim_one(store)
    assert (claim.member, claim.key, claim.occurrence, claim.done) == (member, KEY, 1, ("log",))
    assert await r.pexpiretime(KEY) == expiry
    assert await store.complete_many("A", [Completion(member, 1, None)], fired_window_ms=WINDOW_MS) == 1
    assert not await r.exists(NAMES.record(member), NAMES.fired(KEY))
    assert await r.hgetall(NAMES.record(KEY)) == recurring


# -- encode_payload ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([1, 2], "payload must be a JSON object, got list"),
        ("[1, 2]", "payload must be a JSON object, got list"),
        ("42", "payload must be a JSON object, got int"),
        (None, "payload must be a JSON object, got NoneType"),
        ("nope", "payload is not valid JSON: Expecting value: line 1 column 1 (char 0)"),
        (b'{"a": ', "payload is not valid JSON: Expecting value: line 1 column 7 (char 6)"),
        ('{"a": NaN}', "payload is not JSON-serialisable: Out of range float values are not JSON compliant"),
        (
            {"a": float("inf")},
            "payload is not JSON-serialisable: Out of range float values are not JSON compliant",
        ),
        ({"a": {1, 2}}, "payload is not JSON-serialisable: Object of type set is not JSON serializable"),
        ({"a": "x" * 20}, "payload is 28 bytes, above the limit of 27 bytes"),
        ({"a": "é" * 10}, "payload is 28 bytes, above the limit of 27 bytes"),
    ],
)
def test_encode_payload_rejects_bad_values(payload: Any, message: str) -> None:
    """Payloads that are not a JSON object within the limit fail with the exact message."""
    with pytest.raises(PayloadError) as info:
        encode_payload(payload, 27)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("payload", "encoded"),
    [
        ({}, ""),
        ("{}", ""),
        ({"a": "x" * 19}, json.dumps({"a": "x" * 19}, separators=(",", ":"))),
        (b'{"b": [1, 2], "a": "\\u00e9"}', '{"b":[1,2],"a":"é"}'),
    ],
)
def test_encode_payload_accepts_objects(payload: Any, encoded: str) -> None:
    """Objects (as dicts, JSON text or bytes) encode compactly; exactly at the limit is allowed."""
    assert encode_payload(payload, 27) == encoded


# -- schedule_many ----------------------------------------------------------------------


async def test_schedule_many_writes_every_kind_of_request(store: Store, r: aioredis.Redis) -> None:
    """Packed items keep each field: plain one-shots, payloads with any text, schedules, misfire, NX."""
    now = await redis_now(r)
    payload = json.dumps({"text": "tab\t, sep\x1f and \u00e9"}, ensure_ascii=False, separators=(",", ":"))
    reqs = [
        req("send_message-1-plain", now + 60_000),
        req("send_message-2-rich", now + 61_000, Every(60_000, now + 61_000), payload_json=payload),
        req("send_message-3-skip", now + 62_000, misfire=Misfire.SKIP),
        req("send_message-1-plain", now + 63_000, only_if_absent=True),
    ]
    assert await store.schedule_many(reqs) == 3
    assert not await r.exists(NAMES.record("send_message-1-plain"))
    assert await r.zscore(NAMES.due_of("send_message-1-plain"), "send_message-1-plain") == now + 60_000
    rich = await store.get("send_message-2-rich")
    assert rich is not None
    assert (rich.payload, rich.schedule) == (json.loads(payload), Every(60_000, now + 61_000))
    assert await r.hget(NAMES.record("send_message-3-skip"), "m") == "skip"


async def test_schedule_many_refuses_a_key_with_a_control_character(store: Store) -> None:
    """A key holding a packing separator is refused before anything is written."""
    with pytest.raises(ValueError, match="control character"):
        await store.schedule_many([req("send_message-1-x\x1e", 1)])
