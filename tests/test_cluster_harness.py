"""The cluster test harness itself: a usable cluster, with every slot owned and every replica linked."""

from __future__ import annotations

from redis.crc import key_slot

from tests.cluster_topology import SLOTS, ClusterTopology


def test_every_slot_is_owned_once_and_every_primary_has_a_replica(cluster: ClusterTopology) -> None:
    """Every slot has one owner, and every primary a replica whose link is up."""
    primaries = cluster.primaries()
    assert len(primaries) == 3
    views = {v.node_id: v for v in primaries[0].view()}
    owned = sorted(s for p in primaries for low, high in views[p.node_id].slots for s in range(low, high + 1))
    assert owned == list(range(SLOTS))
    for primary in primaries:
        replica = cluster.replica_of(primary)
        assert replica.info("replication")["master_link_status"] == "up"
        assert primary.info("cluster")["cluster_state"] == "ok"


def test_node_for_key_names_the_owner(cluster: ClusterTopology) -> None:
    """node_for_key and key_on name the primary that takes the key without MOVED."""
    for primary in cluster.primaries():
        key = cluster.key_on(primary, "harness-")
        assert cluster.node_for_key(key) is primary
        with primary.client() as c:
            c.set(key, "1", px=60_000)  # the owner takes it: no MOVED
            assert c.execute_command("CLUSTER KEYSLOT", key) == key_slot(key.encode())
            c.delete(key)


def test_the_spare_is_outside_until_added(cluster: ClusterTopology) -> None:
    """The spare runs but is no member until add_node."""
    assert cluster.spare.alive()
    assert cluster.spare.node_id not in {v.node_id for v in cluster.primaries()[0].view()}
