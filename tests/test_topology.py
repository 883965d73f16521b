"""``reminderd status`` shows the topology: standalone, and a real Sentinel primary, replica and sentinels."""

from __future__ import annotations

import json

import pytest
import redis.asyncio as aioredis

from reminderd.api.status import collect, render, to_json
from reminderd.config import load_config_text
from reminderd.storage.connection import make_client
from tests.redis_server import free_port
from tests.sentinel_topology import MASTER, SentinelTopology


async def test_standalone_shows_its_role_and_no_replica(redis_url: str) -> None:
    """A lone server is standalone, a master, with no replica and no sentinel."""
    settings = load_config_text(f"redis: {{url: '{redis_url}'}}")
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        report = await collect(client, settings, redis_url)
    finally:
        await client.aclose()
    assert report.topology is not None
    assert (report.topology.kind, report.topology.role) == ("standalone", "master")
    assert report.topology.replicas == report.topology.sentinels == []
    assert any(line.startswith("topology:") and "standalone" in line for line in render(report))


@pytest.mark.parametrize("wait_replicas", [0, 2])
async def test_sentinel_shows_primary_replica_and_sentinels(
    sentinel_topology: SentinelTopology, wait_replicas: int
) -> None:
    """Under Sentinel: the master name, the primary's address, the replica online with its lag,
    every sentinel naming the primary, a dead sentinel as unreachable, in text and JSON."""
    dead = f"127.0.0.1:{free_port()}"
    nodes = ", ".join(repr(n) for n in [*sentinel_topology.nodes, dead])
    settings = load_config_text(
        f"redis: {{sentinel: {{master: {MASTER}, nodes: [{nodes}]}}, wait_replicas: {wait_replicas}}}"
    )
    client = make_client(settings.redis, settings.redis.url)
    try:
        report = await collect(client, settings, settings.redis.url)
    finally:
        await client.aclose()
    topology, primary = report.topology, f"127.0.0.1:{sentinel_topology.primary_port()}"
    assert topology is not None
    assert (topology.kind, topology.master, topology.primary, topology.role) == (
        "sentinel",
        MASTER,
        primary,
        "master",
    )
    (replica,) = topology.replicas
    assert replica.address == f"127.0.0.1:{sentinel_topology.replica.port}"
    assert replica.state == "online"
    assert replica.lag_bytes is not None
    live = [s for s in topology.sentinels if s.node != dead]
    assert [(s.primary, s.replicas, s.sentinels) for s in live] == [(primary, 1, 2)] * 3
    assert [s.error is not None for s in topology.sentinels if s.node == dead] == [True]
    assert any(dead in w for w in report.warnings)
    assert any("wait_replicas is 2" in w for w in report.warnings) == (wait_replicas == 2)
    text = "\n".join(render(report))
    assert f"master {MASTER}, {primary} (master), 1 replica(s)" in text
    assert f"{dead} unreachable" in text
    data = json.loads(json.dumps(to_json(report)))
    assert data["topology"]["replicas"][0]["state"] == "online"
    assert data["redis"] == settings.redis.url
