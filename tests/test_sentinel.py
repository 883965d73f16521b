"""Redis Sentinel: the config, discovery of the primary, and what a connection accepts."""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from typing import Any

import pytest
import redis.asyncio as aioredis
import yaml
from redis.exceptions import RedisError

from reminderd.api import AsyncReminders, Reminders, When
from reminderd.config import describe, load_config_text
from reminderd.config.model import Settings
from reminderd.errors import ConfigError
from reminderd.storage.connection import make_client, resolve_url
from reminderd.storage.sentinel import PrimaryOnlyConnection, PrimaryWatch, WatchedPool, watched_pool
from tests.redis_server import free_port
from tests.sentinel_topology import MASTER, SentinelTopology


def _settings(text: str) -> Settings:
    return load_config_text(text)


def _sentinel_yaml(nodes: list[str], **extra: Any) -> str:
    fields = "".join(f", {k}: {v}" for k, v in extra.items())
    return f"redis: {{sentinel: {{master: {MASTER}, nodes: [{', '.join(repr(n) for n in nodes)}]{fields}}}}}"


def test_section_and_url_forms_mean_the_same() -> None:
    """The section and the redis+sentinel:// URL give one target, named by the canonical URL."""
    section = _settings(_sentinel_yaml(["a:1", "b:2"], db=3, password="pw"))
    url = _settings("redis: {url: 'redis+sentinel://:pw@a:1,b:2/mymaster/3'}")
    assert section.redis.sentinel == url.redis.sentinel
    assert section.redis.url == url.redis.url == "redis+sentinel://a:1,b:2/mymaster/3"
    assert url.redis.sentinel is not None
    assert url.redis.sentinel.password == "pw"
    assert url.redis.sentinel.addresses == [("a", 1), ("b", 2)]


def test_check_config_output_loads_back() -> None:
    """What check-config prints for a sentinel config (url and section both) is a valid config."""
    settings = _settings(_sentinel_yaml(["a:1", "b:2"], db=2, sentinel_password="spw"))
    printed = describe(settings)
    printed["redis"]["sentinel"]["sentinel_password"] = "spw"  # printed masked
    again = load_config_text(yaml.safe_dump({"redis": printed["redis"]}))
    assert again.redis == settings.redis


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("redis: {url: 'redis://h:6379/0', sentinel: {master: m, nodes: ['a:1']}}", "mutually exclusive"),
        ("redis: {url: 'redis+sentinel://a:1/m', sentinel: {master: m, nodes: [a]}}", "mutually exclusive"),
        ("redis: {sentinel: {master: m, nodes: []}}", "redis.sentinel.nodes: list at least one sentinel"),
        ("redis: {sentinel: {master: m, nodes: ['a:99999']}}", "redis.sentinel.nodes: nodes[0]: 'a:99999'"),
        ("redis: {sentinel: {master: m, nodes: ['a:1', 'a:1']}}", "listed twice"),
        ("redis: {sentinel: {nodes: ['a:1']}}", "redis.sentinel.master: Field required"),
        ("redis: {sentinel: {master: m, nodes: ['a:1'], db: true}}", "redis.sentinel.db"),
        ("redis: {sentinel: {master: m, nodes: ['a:1'], sentinel_pass: x}}", "redis.sentinel.sentinel_pass"),
        ("redis: {url: 'redis+sentinel://a:1'}", "names the master"),
    ],
)
def test_bad_sentinel_config_names_the_path(text: str, message: str) -> None:
    """A wrong sentinel setting is one error that names its path and says what is wrong."""
    with pytest.raises(ConfigError, match=r"^<string>: redis") as caught:
        _settings(text)
    assert message in str(caught.value)


def test_environment_url_replaces_the_sentinel_section(monkeypatch: pytest.MonkeyPatch) -> None:
    """$REMINDERD_REDIS_URL names the target even where the file configures sentinels."""
    monkeypatch.setenv("REMINDERD_REDIS_URL", "redis://127.0.0.1:6390/0")
    settings = _settings(_sentinel_yaml(["a:1"]))
    assert settings.redis.sentinel is None
    assert settings.redis.url == "redis://127.0.0.1:6390/0"


async def _discover(settings: Settings) -> tuple[float, int]:
    """Seconds to the first PING through the sentinels, and the port that answered."""
    async with AsyncExitStack() as stack:
        url = await resolve_url(settings.redis, stack, own=False)
        client = make_client(settings.redis, url)
        stack.push_async_callback(client.aclose)
        started = time.monotonic()
        await client.ping()
        took_s = time.monotonic() - started
        address = watched_pool(client).master_address
        assert address is not None
        return took_s, int(address[1])


async def test_discovery_finds_the_primary(sentinel_topology: SentinelTopology) -> None:
    """A client built from the sentinel settings talks to the primary the sentinels name."""
    took_s, port = await _discover(_settings(_sentinel_yaml(sentinel_topology.nodes)))
    assert port == sentinel_topology.primary.port
    assert took_s < 0.5


async def test_dead_first_sentinel_costs_nothing(sentinel_topology: SentinelTopology) -> None:
    """A first sentinel that refuses connections is skipped at once, not retried with backoff."""
    nodes = [f"127.0.0.1:{free_port()}", *sentinel_topology.nodes]
    took_s, port = await _discover(_settings(_sentinel_yaml(nodes)))
    assert port == sentinel_topology.primary.port
    assert took_s < 0.2, f"discovery took {took_s:.2f}s"


def test_sync_api_from_config_goes_through_the_sentinels(
    sentinel_topology: SentinelTopology, tmp_path: Any
) -> None:
    """Reminders.from_config with a sentinel section writes to the primary (and so the replica)."""
    cfg = tmp_path / "r.yaml"
    cfg.write_text(_sentinel_yaml(sentinel_topology.nodes))
    with Reminders.from_config(cfg) as api:
        api.schedule("send_message-1-sentinel", when=When(in_=60_000))
        assert api.get("send_message-1-sentinel") is not None
    assert sentinel_topology.primary.client().exists("send_message-1-sentinel") == 1
    sentinel_topology.primary.client().delete("send_message-1-sentinel")


class _StaleSentinels:
    """A sentinel view that still names the replica as the primary (as after a missed failover)."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address

    async def discover_master(self, service_name: str) -> tuple[str, int]:
        return self.address


async def test_a_replica_at_the_primary_address_is_refused(sentinel_topology: SentinelTopology) -> None:
    """A connection that finds a replica where the primary should be fails instead of serving."""
    stale = _StaleSentinels(("127.0.0.1", sentinel_topology.replica.port))
    pool = WatchedPool(MASTER, stale, decode_responses=True)  # type: ignore[arg-type]
    client = aioredis.Redis.from_pool(pool)
    try:
        with pytest.raises(aioredis.ConnectionError, match="answers as a slave, not the primary"):
            await client.ping()
    finally:
        await client.aclose()
    assert pool.connection_class is PrimaryOnlyConnection


async def test_api_schedules_through_a_sentinel_url(sentinel_topology: SentinelTopology) -> None:
    """AsyncReminders on a make_client sentinel client schedules on the primary."""
    settings = _settings(f"redis: {{url: '{sentinel_topology.url()}'}}")
    client = make_client(settings.redis, settings.redis.url)
    try:
        api = AsyncReminders(client, settings)
        await api.schedule("send_message-2-sentinel", when=When(in_=60_000))
        assert await asyncio.wait_for(api.get("send_message-2-sentinel"), 2) is not None
    finally:
        await client.delete("send_message-2-sentinel")
        await client.aclose()


async def test_readonly_is_reported_as_a_change_of_primary(fresh_sentinels: SentinelTopology) -> None:
    """A write that meets a demoted primary (READONLY) fails and is reported as a new primary."""
    settings = _settings(_sentinel_yaml(fresh_sentinels.nodes))
    assert settings.redis.sentinel is not None
    client = make_client(settings.redis, settings.redis.url)
    watch = PrimaryWatch(settings.redis.sentinel, [client])
    listening = asyncio.create_task(watch.run())
    try:
        await client.set("k", "1")  # a pooled connection to the primary
        fresh_sentinels.replica.client().replicaof("NO", "ONE")
        fresh_sentinels.primary.client().replicaof("127.0.0.1", fresh_sentinels.replica.port)
        with pytest.raises(RedisError):  # never served by a replica, whatever the sentinels say
            await client.set("k", "2")
        change = await asyncio.wait_for(watch.changed(), 5)
        assert change.reason == "readonly"
    finally:
        listening.cancel()
        await client.aclose()
