"""The routing client across a failover: writes to the killed primary's slots resume on the
promoted replica within seconds, with no new client."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.exceptions import RedisError

from reminderd.storage.cluster import cluster_client
from tests.cluster_topology import ClusterTopology
from tests.cluster_watching import cluster_settings

pytestmark = pytest.mark.slow


async def test_writes_follow_a_failover(fresh_cluster: ClusterTopology) -> None:
    """After kill -9 of a primary, the same client writes to its slots again once a replica took them."""
    settings = cluster_settings(fresh_cluster).redis
    assert settings.cluster is not None
    client = cluster_client(settings, settings.cluster)
    old = fresh_cluster.primaries()[0]
    key = fresh_cluster.key_on(old, "follow-")
    try:
        assert await client.set(key, "before")
        replica = fresh_cluster.kill_primary(old)
        killed_at, failures = time.monotonic(), 0
        while time.monotonic() - killed_at < 30:
            try:
                await client.set(key, "after")
                break
            except (RedisError, OSError):
                failures += 1
                await asyncio.sleep(0.1)
        took_s = time.monotonic() - killed_at
        print(f"first write on the promoted replica {took_s:.1f}s after kill -9 ({failures} failed tries)")
        assert took_s < 15
        assert replica.client().get(key) == b"after"
    finally:
        await client.aclose()
