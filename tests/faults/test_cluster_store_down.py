"""The sharded store while one primary is down (before its replica is promoted): the shards on
the other primaries must go on being swept."""

from __future__ import annotations

import pytest

from reminderd.api import AsyncReminders, When
from reminderd.config import load_config_text
from reminderd.storage.cluster import check_cluster_layout
from reminderd.storage.connection import make_client
from tests.cluster_topology import ClusterTopology

pytestmark = pytest.mark.slow


async def test_a_sweep_claims_from_the_reachable_shards_while_a_primary_is_down(
    fresh_cluster: ClusterTopology,
) -> None:
    """64 reminders due now over 16 shards, one primary killed: the sweep returns the others'."""
    url = "redis+cluster://" + ",".join(fresh_cluster.nodes)
    settings = load_config_text(f"redis: {{url: '{url}', shards: 16}}")
    client = make_client(settings.redis, settings.redis.url)
    try:
        await check_cluster_layout(settings, client)
        api = AsyncReminders(client, settings)
        await api.schedule_many((f"send_message-{i}-down", None, When(in_=0)) for i in range(64))
        fresh_cluster.kill_primary(fresh_cluster.primaries()[0])
        claimed = await api.store.claim_due("test", limit=100, lease_ms=5000)
        assert len(claimed.claims) >= 20  # about two thirds of 64 live on the other primaries
    finally:
        await client.aclose()
