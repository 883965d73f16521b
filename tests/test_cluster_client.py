"""The cluster clients against a real cluster: the routing client reaches every slot range, a
node client reaches one node only."""

from __future__ import annotations

from redis.crc import key_slot

from reminderd.config import load_config_text
from reminderd.config.model import RedisSettings
from reminderd.storage.cluster import cluster_client, node_client
from tests.cluster_topology import SLOTS, ClusterTopology


def _settings(cluster: ClusterTopology) -> RedisSettings:
    nodes = ", ".join(f"'{n}'" for n in cluster.nodes[:1])  # one seed: the client finds the rest
    return load_config_text(f"redis: {{cluster: {{nodes: [{nodes}]}}}}").redis


def _keys_in_every_range(parts: int = 32) -> list[str]:
    """One key per 1/``parts`` of the slot range (so every primary gets several)."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < parts:
        key = f"client-{n}"
        found.setdefault(key_slot(key.encode()) * parts // SLOTS, key)
        n += 1
    return list(found.values())


async def test_set_and_get_in_every_slot_range(cluster: ClusterTopology) -> None:
    """The routing client from one seed writes and reads keys in every part of the slot range."""
    settings = _settings(cluster)
    assert settings.cluster is not None
    client = cluster_client(settings, settings.cluster)
    keys = _keys_in_every_range()
    try:
        for key in keys:
            assert await client.set(key, key.upper(), px=60_000)
        for key in keys:
            assert await client.get(key) == key.upper()
        assert len(client.get_primaries()) == 3
    finally:
        await client.delete(*keys)  # one DEL per slot: the client splits it
        await client.aclose()
    owners = {cluster.node_for_key(k).port for k in keys}
    assert owners == {p.port for p in cluster.primaries()}


async def test_a_node_client_talks_to_that_node_only(cluster: ClusterTopology) -> None:
    """A node client reaches the one node it names."""
    settings = _settings(cluster)
    assert settings.cluster is not None
    primary = cluster.primaries()[1]
    client = node_client(settings, settings.cluster, ("127.0.0.1", primary.port))
    try:
        info = await client.info("server")
        assert int(info["tcp_port"]) == primary.port
        key = cluster.key_on(primary, "node-")
        assert await client.set(key, "1", px=60_000)
        assert await client.delete(key) == 1
    finally:
        await client.aclose()
