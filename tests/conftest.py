"""Shared fixtures: a private redis-server per session, flushed between tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis
import redis.asyncio as aioredis

from reminderd.storage.server_binary import find_server
from tests.cluster_topology import ClusterTopology
from tests.daemon_proc import DaemonProcess
from tests.redis_server import RedisServer
from tests.sentinel_topology import SentinelTopology


def pytest_sessionstart(session: pytest.Session) -> None:
    """Name the server every test runs against (also under ``-q``): the results are about it."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"redis server: {find_server()}")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the whole session (flushed by ``redis_url`` per test)."""
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of the session server, emptied before the test."""
    redis_server.client().flushall()
    return redis_server.url


@pytest.fixture
def fresh_redis() -> Iterator[RedisServer]:
    """A redis-server of the test's own, for tests that restart or reconfigure it."""
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture
def sync_redis(redis_url: str) -> Iterator[redis.Redis]:
    """A synchronous client on the flushed session server."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
async def aredis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """An asyncio client on the flushed session server."""
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def r(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A text client on the flushed session server (the store reads replies as str)."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
def daemon_procs() -> Iterator[list[DaemonProcess]]:
    """Daemon subprocesses a test started; stopped cleanly (with any embedded server) at the end."""
    started: list[DaemonProcess] = []
    yield started
    for proc in started:
        try:
            proc.stop(30)
        finally:
            proc.close()


@pytest.fixture(scope="module")
def sentinel_topology() -> Iterator[SentinelTopology]:
    """A primary, a replica and three sentinels, shared by a module's tests that cause no failover."""
    topology = SentinelTopology()
    try:
        yield topology.start()
    finally:
        topology.close()


@pytest.fixture
def fresh_sentinels() -> Iterator[SentinelTopology]:
    """A Sentinel topology of the test's own, for tests that kill or fail over its primary."""
    topology = SentinelTopology()
    try:
        yield topology.start()
    finally:
        topology.close()


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterTopology]:
    """Three primaries, three replicas and a spare, shared by a module's tests that leave the
    topology as they found it (no failover, no reshard)."""
    topology = ClusterTopology()
    try:
        yield topology.start()
    finally:
        topology.close()


@pytest.fixture
def fresh_cluster() -> Iterator[ClusterTopology]:
    """A cluster of the test's own, for tests that kill a primary, reshard or add a node."""
    topology = ClusterTopology()
    try:
        yield topology.start()
    finally:
        topology.close()
