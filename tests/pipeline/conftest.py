"""The two ways an occurrence can go, for the tests that must hold on both."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from reminderd.config.model import RedisSettings
from reminderd.storage.connection import make_client
from tests.pipeline import harness


@pytest.fixture(params=["alone", "together"])
def both_paths(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test once with single processors (a task per occurrence) and once with their batch forms."""
    harness.TOGETHER = request.param == "together"
    try:
        yield request.param
    finally:
        harness.TOGETHER = False


@pytest.fixture(autouse=True, params=["single", "sharded"])
def layout(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every pipeline test on both layouts: one shard written inline, and four tagged shards
    with trigger keys written outside the scripts (the Cluster layout, here on one server)."""
    if request.param == "sharded" and request.node.get_closest_marker("single_layout"):
        pytest.skip("a behaviour of the single layout only")
    harness.SHARDS = 4 if request.param == "sharded" else 0
    try:
        yield request.param
    finally:
        harness.SHARDS = 0


@pytest.fixture
async def pubsub_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A second connection for the subscriber, configured as the daemon's (it re-subscribes itself)."""
    client = make_client(RedisSettings(), redis_url, subscriber=True)
    yield client
    await client.aclose()
