"""One subscriber per cluster primary: the events of every node's keys arrive, the flags are
set on every primary, canaries are proved per node."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.crc import key_slot

from reminderd.daemon.cluster import check_cluster_notifications
from reminderd.storage.nodes import key_in_slots
from tests.cluster_topology import ClusterTopology
from tests.cluster_watching import until, watching


async def test_a_raw_key_on_each_primary_reaches_the_hints(cluster: ClusterTopology) -> None:
    """A raw key written on each primary gives an expire hint and, at expiry, an expired hint."""
    async with watching(cluster) as w:
        primaries = cluster.primaries()
        assert set(w.watcher.nodes) == {p.address for p in primaries}
        keys = {p.port: cluster.key_on(p, "send_message-7-") for p in primaries}
        for primary in primaries:
            client = aioredis.Redis(port=primary.port, decode_responses=True)
            try:
                assert "E" in (await client.config_get("notify-keyspace-events"))["notify-keyspace-events"]
                await client.set(keys[primary.port], "1", px=300)
            finally:
                await client.aclose()
        await until(lambda: set(keys.values()) <= set(w.hints.written), 5, "expire events of every node")
        await until(lambda: set(keys.values()) <= set(w.hints.expired), 10, "expired events of every node")
        assert w.gaps == []  # the first topology read is no gap
        for handle in w.watcher.nodes.values():
            assert handle.notify.ok
            assert handle.notify.flags is not None
        text = w.ctx.metrics.render().decode()
        for primary in primaries:
            assert f'reminderd_subscriber_node_connected{{node="{primary.address}"}} 1.0' in text


async def test_a_canary_is_proved_on_every_primary(cluster: ClusterTopology) -> None:
    """A canary named into each primary's slots proves that node's expired events."""
    async with watching(cluster) as w:
        results = await w.watcher.prove_events("reminderd:canary:test-1:")
        assert results == dict.fromkeys(w.watcher.nodes, "ok")


def test_key_in_slots_lands_in_the_slots() -> None:
    """key_in_slots finds a name hashing into the given ranges."""
    for ranges in [((0, 5460),), ((5461, 10921),), ((16000, 16383),), ((42, 42),)]:
        key = key_in_slots("reminderd:canary:x:", ranges)
        slot = key_slot(key.encode())
        assert any(low <= slot <= high for low, high in ranges)


async def test_each_node_scan_sees_that_nodes_keys_only(cluster: ClusterTopology) -> None:
    """NodeHandle.scan (the adoption scan's source on Cluster) walks one primary's keys."""
    async with watching(cluster) as w:
        written: dict[str, set[str]] = {}
        for primary in cluster.primaries():
            keys = {cluster.key_on(primary, f"send_message-{i}-scan") for i in range(5)}
            written[primary.address] = keys
            client = aioredis.Redis(port=primary.port, decode_responses=True)
            try:
                for key in keys:
                    await client.set(key, "1", px=60_000)
            finally:
                await client.aclose()
        try:
            for address, handle in w.watcher.nodes.items():
                seen: set[str] = set()
                cursor = 0
                while True:
                    cursor, keys = await handle.scan(cursor, "send_message-*-scan*", 1000)
                    seen |= set(keys)
                    if cursor == 0:
                        break
                assert seen == written[address]
        finally:
            for address, keys in written.items():
                for key in keys:  # one slot each: a DEL of several would be cross-slot
                    await w.watcher.nodes[address].command.delete(key)


async def test_the_startup_check_proves_every_primary(cluster: ClusterTopology) -> None:
    """check_cluster_notifications: every subscriber up, flags ok, a canary per primary arrived."""
    async with watching(cluster) as w:
        state = await check_cluster_notifications(w.watcher, "reminderd:canary:test-1:ab12:")
    assert state.ok
    assert state.canary == "ok"
    assert state.flags is not None
    assert {"E", "x", "K", "g"} <= set(state.flags)
    assert state.warnings == []
