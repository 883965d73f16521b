"""The cluster harness under faults: kill -9 of a primary promotes its replica; a migration
moves keys; an added node takes slots."""

from __future__ import annotations

import pytest

from tests.cluster_topology import ClusterTopology

pytestmark = pytest.mark.slow


def test_kill_primary_promotes_its_replica(fresh_cluster: ClusterTopology) -> None:
    """kill -9 of a primary: its replica takes its slots and keeps its keys."""
    old = fresh_cluster.primaries()[0]
    key = fresh_cluster.key_on(old, "failover-")
    with old.client() as c:
        c.set(key, "kept")
        c.wait(1, 2000)
    replica = fresh_cluster.kill_primary(old)
    new = fresh_cluster.wait_failover(old)
    assert new is replica
    assert fresh_cluster.node_for_key(key) is new
    with new.client() as c:
        assert c.get(key) == b"kept"
    assert old not in fresh_cluster.primaries()


def test_migration_moves_keys_to_an_added_node(fresh_cluster: ClusterTopology) -> None:
    """An added node given 2,000 slots holds their keys afterwards."""
    src = fresh_cluster.primaries()[0]
    keys = [fresh_cluster.key_on(src, f"move-{i}-") for i in range(20)]
    with src.client() as c:
        for key in keys:
            c.set(key, key)
    dst = fresh_cluster.add_node()
    moved = fresh_cluster.migrate_slots(src, dst, 2000)
    assert len(moved) == 2000
    assert dst in fresh_cluster.primaries()
    for key in keys:
        owner = fresh_cluster.node_for_key(key)
        with owner.client() as c:
            assert c.get(key) == key.encode()
    assert any(fresh_cluster.node_for_key(k) is dst for k in keys)
