"""The key layout: shard tags, the shard count check, and the ordering rules of trigger keys
written outside the scripts (the Cluster layout, run here on a standalone server)."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from reminderd.core.schedules import Once
from reminderd.errors import ConfigError
from reminderd.storage.layout import Layout, check_shards, shard_tags
from reminderd.storage.names import Names
from reminderd.storage.records import AUX_SEP, Note, ScheduleRequest
from reminderd.storage.scripts import prelude, source
from reminderd.storage.store import Completion, Store
from tests.pipeline.harness import wait_for

KEY = "send_message-42-daily"
SHARDED = Layout("t", 4, inline_triggers=False)


@pytest.fixture
def store(r: aioredis.Redis) -> Store:
    """A store of four shards with trigger keys written outside the scripts."""
    return Store(r, SHARDED)


async def redis_now(r: aioredis.Redis) -> int:
    """Redis's clock in epoch milliseconds."""
    sec, usec = await r.time()
    return int(sec) * 1000 + int(usec) // 1000


async def wait_past(r: aioredis.Redis, ms: int) -> None:
    """Wait until Redis's clock is past ``ms``."""

    async def passed() -> bool:
        return await redis_now(r) > ms

    await wait_for(passed)


def once(key: str, due_ms: int) -> ScheduleRequest:
    """A plain one-shot request."""
    return ScheduleRequest(key=key, due_at_ms=due_ms, schedule=Once(due_ms))


# -- the layout -------------------------------------------------------------------------


@pytest.mark.parametrize("shards", [1, 3, 4, 16, 64])
def test_shard_tags_spread_evenly_over_the_slots(shards: int) -> None:
    """Shard i's tag hashes near the middle of the i-th of N equal slot ranges, every tag distinct."""
    tags = shard_tags(shards)
    step = 16384 / shards
    assert len(set(tags)) == shards
    for i, tag in enumerate(tags):
        assert abs(key_slot(tag.encode()) - (i + 0.5) * step) <= 4
        assert len(tag) <= 3


def test_single_layout_keeps_todays_names() -> None:
    """One shard written inline: no hash tag, the names every existing data set uses."""
    layout = Layout.single("t")
    assert layout.shard_names == (Names("t"),)
    assert layout.names_of(KEY).record(KEY) == "t:r:" + KEY
    assert layout.names_of(KEY).due == "t:due"


def test_a_member_and_its_replays_share_a_shard_whose_keys_share_a_slot() -> None:
    """Every key of a shard is in one slot; an auxiliary member goes with its trigger key."""
    names = SHARDED.names_of(KEY)
    assert SHARDED.shard_of(f"{KEY}{AUX_SEP}replay:1") == SHARDED.shard_of(KEY)
    slots = {key_slot(k.encode()) for k in (names.due, names.record(KEY), names.lock(KEY), names.fired(KEY))}
    assert (
        len(slots | {key_slot(n.encode()) for n in (names.aux(KEY), names.stats, names.dead, names.epoch)})
        == 1
    )
    assert {SHARDED.shard_of(f"send_message-{i}-x") for i in range(100)} == {0, 1, 2, 3}


def test_the_cluster_variant_names_no_trigger_key() -> None:
    """The not-inline variant builds names from the shard's due index; the inline one is today's."""
    assert "local INLINE = true" in source("claim_due")
    assert "local INLINE = false" in source("claim_due", False)
    assert "SHARD" not in source("claim_due")


async def test_shard_count_is_written_once_and_checked(r: aioredis.Redis) -> None:
    """The first start writes N; the same N starts again, another one is refused naming both."""
    assert await check_shards(r, SHARDED) == 4
    assert await check_shards(r, SHARDED) == 4
    with pytest.raises(ConfigError, match=r"holds 4 shard\(s\).*configured for 16"):
        await check_shards(r, Layout.cluster("t", 16))
    with pytest.raises(ConfigError, match="configured for 1"):
        await check_shards(r, Layout.single("t"))


async def test_a_data_set_from_before_shard_counts_is_one_shard(r: aioredis.Redis) -> None:
    """An existing single index without a stored count is refused by a sharded layout."""
    await Store(r, Layout.single("t")).schedule(once(KEY, await redis_now(r) + 60_000))
    with pytest.raises(ConfigError, match="holds 1 shard"):
        await check_shards(r, SHARDED)
    assert await check_shards(r, Layout.single("t")) == 1


# -- trigger keys outside the scripts ---------------------------------------------------


async def test_schedule_writes_the_shard_then_the_trigger_key(store: Store, r: aioredis.Redis) -> None:
    """The index entry is in the key's shard; the trigger key expires at the due time."""
    due = await redis_now(r) + 60_000
    await store.schedule(once(KEY, due))
    assert await r.zscore(SHARDED.names_of(KEY).due, KEY) == due
    assert await r.pexpiretime(KEY) == due
    assert not await r.exists("t:due")


async def test_a_key_re_set_by_its_producer_is_never_deleted(store: Store, r: aioredis.Redis) -> None:
    """The claim deletes the trigger key only while it expires at the claimed due time."""
    now = await redis_now(r)
    await r.set("send_message-1-mine", "1", pxat=now + 60_000)
    await r.set("send_message-2-theirs", "1", pxat=now + 90_000)
    deleted = await store.shards.triggers.delete_if(
        [("send_message-1-mine", now + 60_000), ("send_message-2-theirs", now + 60_000)]
    )
    assert deleted == 1
    assert not await r.exists("send_message-1-mine")
    assert await r.pexpiretime("send_message-2-theirs") == now + 90_000
    due = now + 150
    await store.schedule(once(KEY, due))
    await r.set(KEY, '{"new":1}', px=60_000)  # the producer writes the key again meanwhile
    await wait_past(r, due)
    (claim,) = (await store.claim_due("A", limit=10, lease_ms=60_000)).claims
    assert (claim.member, claim.due_at_ms) == (KEY, due)
    assert await r.get(KEY) == '{"new":1}'


async def test_a_stale_expired_event_after_cancel_is_not_adopted(store: Store, r: aioredis.Redis) -> None:
    """Cancel leaves a tombstone: an expired event of the key that arrives late fires nothing."""
    await store.schedule(once(KEY, await redis_now(r) + 60_000))
    assert await store.cancel(KEY)
    assert not await r.exists(KEY)
    got = await store.claim_keys("A", [KEY], lease_ms=60_000, fire_unseen=True, payload_max_bytes=1000)
    assert got.claims == []
    assert got.notes == ((KEY, Note.PROVEN),)
    assert await store.next_due() is None
    await r.set(KEY, "1", px=60_000)  # the producer sets it again: a new raw reminder, adopted
    found = await store.raw.adopt([KEY], payload_max_bytes=1000)
    assert found.adopted == 1


async def test_a_raw_claim_from_the_index_waits_for_its_key(store: Store, r: aioredis.Redis) -> None:
    """A raw reminder due by the index whose key is alive is given back at the key's expiry; one
    persisted is withdrawn; one gone fires."""
    now = await redis_now(r)
    for name in ("moved", "persisted", "gone"):
        await r.set(f"send_message-1-{name}", "1", pxat=now + 200)
    assert (
        await store.raw.adopt(
            [f"send_message-1-{n}" for n in ("moved", "persisted", "gone")], payload_max_bytes=99
        )
    ).adopted == 3
    await r.set("send_message-1-moved", "1", pxat=now + 60_000)
    await r.set("send_message-1-persisted", "1")
    await wait_past(r, now + 200)
    got = await store.claim_due("A", limit=10, lease_ms=60_000)
    assert [c.key for c in got.claims] == ["send_message-1-gone"]
    assert got.notes == (("send_message-1-persisted", Note.WITHDRAWN),)
    moved = SHARDED.names_of("send_message-1-moved")
    assert await r.zscore(moved.due, "send_message-1-moved") == now + 60_000
    assert not await r.exists(moved.lock("send_message-1-moved"))
    assert await store.get("send_message-1-persisted") is None


async def test_a_finished_raw_one_shot_whose_key_is_back_resets(store: Store, r: aioredis.Redis) -> None:
    """Finishing a raw one-shot whose key was written again while it ran returns RESET."""
    now = await redis_now(r)
    await r.set(KEY, "1", pxat=now + 100)
    await store.raw.adopt([KEY], payload_max_bytes=99)
    await wait_past(r, now + 100)
    (claim,) = (await store.claim_due("A", limit=10, lease_ms=60_000)).claims
    await r.set(KEY, "1", px=60_000)
    (result,) = await store.finish_many("A", [Completion(KEY, claim.occurrence, None)], fired_window_ms=5000)
    assert result == 2
    assert await r.exists(KEY)


async def test_reads_merge_the_shards(store: Store, r: aioredis.Redis) -> None:
    """Counts, the next due entry, pages by global rank and the stats cover every shard."""
    now = await redis_now(r)
    keys = [f"send_message-{i}-read" for i in range(40)]
    await store.schedule_many(once(k, now + 10_000 + i) for i, k in enumerate(keys))
    assert {SHARDED.shard_of(k) for k in keys} == {0, 1, 2, 3}
    assert await store.next_due() == (keys[0], now + 10_000)
    assert await store.counts(now + 10_009) == (40, 10)
    assert await store.due_between(now + 10_010, now + 10_019) == 10
    assert await store.rank_after(now + 10_004) == 5
    page = await store.index_page(5, 10)
    assert page == [(k, now + 10_000 + i) for i, k in enumerate(keys)][5:15]
    assert [m for m, _ in await store.index_page(35, 10)] == keys[35:]
    await r.hincrby(SHARDED.shard_names[0].stats, "fired", 2)
    await r.hincrby(SHARDED.shard_names[3].stats, "fired", 3)
    assert (await store.stats())["fired"] == 5


async def test_pages_after_walk_every_shard(store: Store, r: aioredis.Redis) -> None:
    """The future entries of every shard, each once, in pages by rank within each shard."""
    now = await redis_now(r)
    keys = [f"send_message-{i}-page" for i in range(30)]
    await store.schedule_many(once(k, now + 60_000 + i) for i, k in enumerate(keys))
    await store.schedule(once("send_message-99-past", now - 10))
    pages = [page async for page in store.pages_after(now, 4)]
    assert all(len(p) <= 4 for p in pages)
    assert sorted(m for p in pages for m, _ in p) == sorted(keys)


async def test_the_cluster_prelude_builds_the_shards_names(r: aioredis.Redis) -> None:
    """Not inline, the key builders start from the shard named by KEYS[1], the wake channel is
    the namespace's, and the caller's trigger-key state arrives as OUTSIDE."""
    names = SHARDED.shard_names[2]
    body = "return {record_key('m'), lock_key('m'), fired_key('m'), aux_key('m'), WAKE, OUTSIDE['k'][1]}"
    keys = [names.due, names.stats, names.dead]
    got = await r.eval(prelude(False) + body, 3, *keys, "t", "", '{"k":[-2]}')  # type: ignore[misc]
    assert got == [names.record("m"), names.lock("m"), names.fired("m"), names.aux("m"), "t:wake", -2]
