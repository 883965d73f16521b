"""The store on a real Redis Cluster (3 primaries): its shards spread over every primary, and
every script and every trigger-key command stays in one slot (the routing client would
refuse a cross-slot one)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import pytest
from redis.asyncio.cluster import RedisCluster

from reminderd.config import load_config_text
from reminderd.core.schedules import Every, Once
from reminderd.errors import ConfigError
from reminderd.storage.cluster import cluster_client
from reminderd.storage.layout import Layout, check_shards
from reminderd.storage.ratelimit import TokenBucket
from reminderd.storage.records import Note, ScheduleRequest
from reminderd.storage.store import Completion, Store
from tests.cluster_topology import ClusterTopology
from tests.pipeline.harness import wait_for

_namespaces = itertools.count()


@pytest.fixture
async def client(cluster: ClusterTopology) -> AsyncIterator[RedisCluster]:
    """The slot-routing client the daemon uses, from one seed node."""
    settings = load_config_text(f"redis: {{cluster: {{nodes: ['{cluster.nodes[0]}']}}}}").redis
    assert settings.cluster is not None
    routing = cluster_client(settings, settings.cluster)
    yield routing
    await routing.aclose()


@pytest.fixture
def layout() -> Layout:
    """A layout of 16 shards in a namespace of the test's own (the cluster is shared)."""
    return Layout.cluster(f"c{next(_namespaces)}", 16)


@pytest.fixture
def store(client: RedisCluster, layout: Layout) -> Store:
    """The sharded store on the cluster."""
    return Store(client, layout)  # type: ignore[arg-type]  # the routing client speaks the same commands


async def redis_now(client: RedisCluster) -> int:
    """One node's clock in epoch ms (the nodes of this machine share one)."""
    sec, usec = await client.time()
    return int(sec) * 1000 + int(usec) // 1000


async def wait_past(client: RedisCluster, ms: int) -> None:
    """Wait until the cluster's clock is past ``ms``."""

    async def passed() -> bool:
        return await redis_now(client) > ms

    await wait_for(passed)


def once(key: str, due_ms: int) -> ScheduleRequest:
    """A plain one-shot request."""
    return ScheduleRequest(key=key, due_at_ms=due_ms, schedule=Once(due_ms))


def test_the_shards_spread_over_every_primary(cluster: ClusterTopology, layout: Layout) -> None:
    """16 shards on 3 primaries: every primary holds five or six."""
    owners = [cluster.node_for_key(n.due).port for n in layout.shard_names]
    assert sorted(owners.count(p.port) for p in cluster.primaries()) == [5, 5, 6]


async def test_the_shard_count_is_checked_on_the_cluster(client: RedisCluster, layout: Layout) -> None:
    """The count is written once and a different one refused, as on one Redis."""
    assert await check_shards(client, layout) == 16  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="configured for 4"):
        await check_shards(client, Layout.cluster(layout.namespace, 4))  # type: ignore[arg-type]


async def test_a_burst_over_every_shard_is_claimed_and_finished(store: Store, client: RedisCluster) -> None:
    """Reminders of every shard: indexed, armed, claimed up to the limit over the shards, finished."""
    now = await redis_now(client)
    keys = [f"send_message-{i}-burst" for i in range(200)]
    assert await store.schedule_many(once(k, now + 300) for k in keys) == 200
    assert await client.pexpiretime(keys[0]) == now + 300
    assert (await store.counts(now))[0] == 200
    await wait_past(client, now + 300)
    first = (await store.claim_due("A", limit=150, lease_ms=60_000)).claims
    rest = (await store.claim_due("A", limit=150, lease_ms=60_000)).claims
    assert (len(first), len(rest)) == (150, 50)
    assert sorted(c.key for c in first + rest) == sorted(keys)
    done = [Completion(c.member, c.occurrence, None) for c in first + rest]
    assert await store.complete_many("A", done, fired_window_ms=5000) == 200
    assert (await store.stats())["fired"] == 200
    assert await store.next_due() is None


async def test_a_recurring_reminder_is_re_armed_on_its_own_node(store: Store, client: RedisCluster) -> None:
    """The finish re-arms the trigger key after the shard script: SET ... PXAT on the key's node."""
    now = await redis_now(client)
    key = "send_message-7-daily"
    await store.schedule(ScheduleRequest(key=key, due_at_ms=now + 100, schedule=Every(60_000, now + 100)))
    await wait_past(client, now + 100)
    (claim,) = (await store.claim_due("A", limit=10, lease_ms=60_000)).claims
    assert await store.complete_many(
        "A", [Completion(key, claim.occurrence, now + 60_100)], fired_window_ms=5000
    )
    assert await client.pexpiretime(key) == now + 60_100
    reminder = await store.get(key)
    assert reminder is not None
    assert reminder.due_at_ms == now + 60_100


async def test_a_raw_key_is_adopted_fired_and_remembered(
    store: Store, client: RedisCluster, layout: Layout
) -> None:
    """A producer's raw key on any node: adopted at its expiry, fired from its expired event once
    gone, and its fired marker in its shard answers a repeated event."""
    now = await redis_now(client)
    key = "send_message-9-raw"
    await client.set(key, '{"text":"hi"}', pxat=now + 200)
    assert (await store.raw.adopt([key], payload_max_bytes=1000)).adopted == 1
    await wait_past(client, now + 200)
    got = await store.claim_keys("A", [key], lease_ms=60_000, fire_unseen=True, payload_max_bytes=1000)
    (claim,) = got.claims
    assert (claim.raw, claim.payload_json) == (True, '{"text":"hi"}')
    assert await store.complete_many("A", [Completion(key, 1, None)], fired_window_ms=5000) == 1
    assert await client.exists(layout.names_of(key).fired(key))
    again = await store.claim_keys("A", [key], lease_ms=60_000, fire_unseen=True, payload_max_bytes=1000)
    assert again.notes == ((key, Note.PROVEN),)


async def test_cancel_deletes_the_key_and_leaves_a_tombstone(store: Store, client: RedisCluster) -> None:
    """Cancel on Cluster: the shard first (with its tombstone), then the key on its node."""
    key = "send_message-11-cancel"
    await store.schedule(once(key, await redis_now(client) + 60_000))
    assert await client.exists(key)
    assert await store.cancel(key)
    assert not await client.exists(key)
    late = await store.claim_keys("A", [key], lease_ms=60_000, fire_unseen=True, payload_max_bytes=1000)
    assert (late.claims, late.notes) == ([], ((key, Note.PROVEN),))


async def test_a_rate_bucket_is_one_slot(client: RedisCluster, layout: Layout) -> None:
    """The token bucket's script declares its one daemon-wide key only: it runs on Cluster."""
    bucket = TokenBucket(client, layout.names)  # type: ignore[arg-type]
    assert [await bucket.acquire("sms", 1.0, 2) for _ in range(2)] == [0, 0]
    assert await bucket.acquire("sms", 1.0, 2) > 0
