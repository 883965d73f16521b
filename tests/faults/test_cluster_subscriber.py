"""The topology watcher under faults: kill -9 of a primary, a node added and given slots.

Measured facts behind it: ``CONFIG SET`` is not replicated (a promoted replica had ``''`` and
delivered no event until the flags were set again), and redis-py's cluster notifications
never subscribe to a promoted replica or an added node.
"""

from __future__ import annotations

import time

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from tests.cluster_topology import ClusterTopology
from tests.cluster_watching import until, watching

pytestmark = pytest.mark.slow


async def _expire_soon(port: int, key: str) -> None:
    client = aioredis.Redis(port=port, decode_responses=True)
    try:
        await client.set(key, "1", px=200)
    finally:
        await client.aclose()


async def test_the_promoted_replica_gets_the_flags_and_its_events_arrive(
    fresh_cluster: ClusterTopology,
) -> None:
    """After kill -9 of a primary the promoted replica is subscribed, gets the flags, its events arrive."""
    async with watching(fresh_cluster) as w:
        old = fresh_cluster.primaries()[0]
        replica = fresh_cluster.replica_of(old)
        assert replica.client().config_get("notify-keyspace-events")["notify-keyspace-events"] == ""
        killed_at = time.monotonic()
        fresh_cluster.kill_primary(old)
        new = fresh_cluster.wait_failover(old)
        assert new is replica
        await until(lambda: new.address in w.watcher.nodes, 10, "a subscriber on the promoted replica")
        assert old.address not in w.watcher.nodes
        await until(lambda: new.address in w.gaps, 10, "the gap of the promoted replica")
        flags = new.client().config_get("notify-keyspace-events")["notify-keyspace-events"]
        assert {"E", "x", "K", "g"} <= set(flags)
        key = fresh_cluster.key_on(new, "send_message-9-")
        await _expire_soon(new.port, key)
        await until(lambda: key in w.hints.expired, 10, "an expired event from the promoted replica")
        took_s = time.monotonic() - killed_at
        print(f"events resumed {took_s:.1f}s after kill -9 of the primary")
        assert took_s < 20, f"events resumed {took_s:.1f}s after the kill"
        assert w.hints.wake.is_set()  # the gap asked for a sweep
        old.start()  # back from the dead: it rejoins as a replica, and is not subscribed
        await until(
            lambda: old in [fresh_cluster.by_id(v.node_id) for v in new.view() if v.master_id], 20, "rejoin"
        )
        await w.watcher.refresh()
        assert set(w.watcher.nodes) == {p.address for p in fresh_cluster.primaries()}
        assert old.address not in w.watcher.nodes


async def test_an_added_node_given_slots_is_subscribed(fresh_cluster: ClusterTopology) -> None:
    """A node added and given slots is subscribed, reported as a gap, and its events arrive."""
    async with watching(fresh_cluster) as w:
        src = fresh_cluster.primaries()[0]
        dst = fresh_cluster.add_node()
        assert dst.address not in w.watcher.nodes  # no slots yet: nothing to hear there
        fresh_cluster.migrate_slots(src, dst, 500)
        await until(lambda: dst.address in w.watcher.nodes, 10, "a subscriber on the added node")
        await until(lambda: dst.address in w.gaps, 10, "the gap of the added node")
        assert w.node(src.port).slots != fresh_cluster.slots_of(dst)
        key = fresh_cluster.key_on(dst, "send_message-3-")
        await _expire_soon(dst.port, key)
        await until(lambda: key in w.hints.expired, 10, "an expired event from the added node")
        assert w.node(dst.port).slots == fresh_cluster.slots_of(dst)


async def test_raw_keys_in_migrated_slots_fire_from_their_new_owner(fresh_cluster: ClusterTopology) -> None:
    """500 slots moved between primaries with raw keys in them: each key's expired event arrives."""
    async with watching(fresh_cluster) as w:
        src, dst = fresh_cluster.primaries()[:2]
        moving = fresh_cluster.slots_of(src)[0][0]
        keys = [fresh_cluster.key_on(src, f"send_message-{i}-moved") for i in range(200)]
        keys = [k for k in keys if key_slot(k.encode()) < moving + 500][:10]
        assert keys
        client = aioredis.Redis(port=src.port, decode_responses=True)
        try:
            for key in keys:
                await client.set(key, "1", px=120_000)  # alive whatever the migration takes
        finally:
            await client.aclose()
        moved = fresh_cluster.migrate_slots(src, dst, 500)
        assert all(key_slot(k.encode()) in moved for k in keys)
        assert all(fresh_cluster.node_for_key(k) is dst for k in keys)
        with dst.client() as c:
            assert all(c.pttl(k) > 0 for k in keys)  # moved alive: their events are the new owner's
            for k in keys:
                c.pexpire(k, 300)  # due soon, on the new owner
        await until(lambda: set(keys) <= set(w.hints.expired), 15, "expired events from the new owner")
        assert set(w.watcher.nodes) == {p.address for p in fresh_cluster.primaries()}
        assert w.gaps == []  # both nodes were subscribed throughout
