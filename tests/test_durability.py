"""``redis.wait_replicas``: claims and finishes followed by WAIT on their own connection."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from reminderd.config import load_config_text
from reminderd.core.schedules import Once
from reminderd.daemon.startup import open_store
from reminderd.errors import ConfigError
from reminderd.storage.connection import make_client
from reminderd.storage.durability import Durability
from reminderd.storage.names import Names
from reminderd.storage.store import Completion, ScheduleRequest, Store
from reminderd.telemetry.metrics import Metrics
from tests.sentinel_topology import SentinelTopology
from tests.test_metrics import sample

NAMES = Names("t")
WINDOW_MS = 5_000


async def wait_calls(r: aioredis.Redis) -> int:
    """How many WAIT commands the server has run."""
    stats = await r.info("commandstats")
    return int(stats.get("cmdstat_wait", {}).get("calls", 0))


async def claim_and_finish(store: Store, key: str) -> None:
    """Schedule ``key`` due now, claim it, mark one processor done and complete it."""
    now = await store.now_ms()
    await store.schedule(ScheduleRequest(key=key, due_at_ms=now - 1, schedule=Once(now - 1)))
    (claim,) = (await store.claim_due("A", limit=10, lease_ms=60_000)).claims
    assert await store.mark_done("A", claim, "log")
    done = await store.complete_many(
        "A", [Completion(claim.member, claim.occurrence, None)], fired_window_ms=WINDOW_MS
    )
    assert done == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("redis: {wait_replicas: -1}", "redis.wait_replicas"),
        ("redis: {wait_replicas: 100}", "redis.wait_replicas"),
        ("redis: {wait_replicas: true}", "redis.wait_replicas"),
        ("redis: {wait_replicas: 1, wait_timeout: 0s}", "redis.wait_timeout"),
        ("redis: {wait_replicas: 1, wait_timeout: 1h}", "redis.wait_timeout"),
    ],
)
def test_bad_durability_settings_are_config_errors(text: str, message: str) -> None:
    """A negative, boolean or absurd replica count or timeout fails at load, naming its key."""
    with pytest.raises(ConfigError, match=message):
        load_config_text(text)


def test_durability_is_off_by_default() -> None:
    """No wait_replicas: no WAIT; given: the count and the timeout in milliseconds."""
    assert Durability.of(load_config_text("{}").redis) is None
    on = Durability.of(load_config_text("redis: {wait_replicas: 2, wait_timeout: 250ms}").redis)
    assert on is not None
    assert (on.replicas, on.timeout_ms) == (2, 250)


async def test_off_sends_no_wait(r: aioredis.Redis) -> None:
    """Without durability the claim and the finish run no WAIT."""
    before = await wait_calls(r)
    await claim_and_finish(Store(r, NAMES), "send_message-1-a")
    assert await wait_calls(r) == before


async def test_a_flushed_script_cache_is_reloaded(r: aioredis.Redis) -> None:
    """A server without the scripts (restarted, promoted) gets them loaded, its replicas counted,
    and the call retried (here without WAIT: the server has no replica)."""
    await claim_and_finish(Store(r, NAMES), "send_message-1-a")
    await r.script_flush()
    before, durability = await wait_calls(r), Durability(1, 5)
    await claim_and_finish(Store(r, NAMES, durability), "send_message-1-b")
    assert await wait_calls(r) - before == 1  # the failed first attempt's
    assert durability.connected == 0


def test_the_warning_is_rate_limited() -> None:
    """Short replies are logged once per interval with how many came since the last line."""
    durability = Durability(1, 100, warn_every_s=60)
    with capture_logs() as logs:
        for at_s in (0.0, 1.0, 2.0, 61.0):
            durability.acknowledged(0, now_s=at_s)
        durability.acknowledged(1, now_s=62.0)
    assert [line["writes"] for line in logs] == [1, 3]
    assert durability.short == 4


def test_the_metric_reads_the_count() -> None:
    """``reminderd_replication_short_total`` serves the durability's own count at each scrape."""
    metrics, durability = Metrics(), Durability(1, 100)
    metrics.count_replication_short(lambda: durability.short)
    durability.acknowledged(0, now_s=0.0)
    assert sample(metrics, "reminderd_replication_short_total") == 1.0


async def test_sentinel_replica_acknowledges(sentinel_topology: SentinelTopology) -> None:
    """On the Sentinel topology the replica acknowledges each claim and finish: nothing short."""
    settings = load_config_text(
        f"redis: {{url: '{sentinel_topology.url()}', wait_replicas: 1, wait_timeout: 2s}}"
    )
    client = make_client(settings.redis, settings.redis.url)
    try:
        await client.flushdb()
        durability = Durability.of(settings.redis)
        assert durability is not None
        await claim_and_finish(Store(client, NAMES, durability), "send_message-1-a")
        assert durability.short == 0
    finally:
        await client.aclose()


async def test_no_replica_connected_stops_the_blocking(r: aioredis.Redis) -> None:
    """With no replica connected, after one short reply the scripts run without WAIT (still counted)."""
    durability = Durability(1, 200)
    store = Store(r, NAMES, durability)
    before = await wait_calls(r)
    await claim_and_finish(store, "send_message-1-a")
    await claim_and_finish(store, "send_message-1-b")
    assert await wait_calls(r) - before == 1  # the first claim's; ROLE then found no replica
    assert durability.connected == 0
    assert durability.short == 6


async def test_a_replica_back_brings_wait_back(sentinel_topology: SentinelTopology) -> None:
    """After ROLE found too few replicas, the next recheck that finds one sends WAIT again."""
    settings = load_config_text(
        f"redis: {{url: '{sentinel_topology.url()}', wait_replicas: 1, wait_timeout: 2s}}"
    )
    client = make_client(settings.redis, settings.redis.url)
    try:
        await client.flushdb()
        durability = Durability(1, 2000, connected=0)  # as after a failover to a lone primary
        before = await wait_calls(client)
        await claim_and_finish(Store(client, NAMES, durability), "send_message-1-a")
        assert durability.connected == 1
        assert await wait_calls(client) - before == 3
        assert durability.short == 0
    finally:
        await client.aclose()


async def test_the_daemon_store_counts_short_replies(r: aioredis.Redis) -> None:
    """The daemon's store carries the durability and serves its metric; with 0, neither."""
    on, off = (load_config_text(f"redis: {{wait_replicas: {n}}}") for n in (1, 0))
    metrics = Metrics()
    assert open_store(off, r, metrics).durability is None
    assert sample(metrics, "reminderd_replication_short_total") is None
    store = open_store(on, r, metrics)
    assert store.durability is not None
    assert sample(metrics, "reminderd_replication_short_total") == 0.0
