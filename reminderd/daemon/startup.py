"""The steps before live service: wait for Redis, then fix, check and prove notifications.

Order matters and is the daemon's (``reminderd.daemon.lifecycle``): subscribe first so no
event is missed, then these checks, then reconcile, then READY=1.
"""

from __future__ import annotations

import asyncio
import secrets
import time

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from reminderd.config.model import Settings
from reminderd.pipeline.subscriber import Subscriber
from reminderd.storage.cluster import layout_for
from reminderd.storage.connection import UnreachableNotice
from reminderd.storage.durability import Durability
from reminderd.storage.names import Names
from reminderd.storage.server import NotifyState, doctor, ensure_notifications, prove_events
from reminderd.storage.store import Store
from reminderd.telemetry.health import Health
from reminderd.telemetry.metrics import Metrics
from reminderd.telemetry.systemd import Notifier

log = structlog.get_logger("reminderd.daemon.startup")
SUBSCRIBE_WAIT_S = 5.0
FIRST_RETRY_S, MAX_RETRY_S = 0.2, 10.0


async def wait_for_redis(
    storage: aioredis.Redis,
    stop: asyncio.Event,
    health: Health,
    notifier: Notifier,
    notice: UnreachableNotice,
) -> bool:
    """Retry until Redis answers (True) or ``stop`` is set (False): systemd may start us first.

    The URL and what to check are logged at the first failure, then once a minute (``notice``).
    """
    delay_s = FIRST_RETRY_S
    while not stop.is_set():
        try:
            await storage.ping()
            health.redis_reachable = True
            return True
        except (RedisError, OSError) as exc:
            if notice.due(time.monotonic()):
                log.warning("redis.unavailable", **notice.fields(exc), retry_in_s=delay_s)
            notifier.status(f"waiting for Redis: {exc}")  # why the unit is not active yet
            try:
                await asyncio.wait_for(stop.wait(), delay_s)
            except TimeoutError:
                delay_s = min(delay_s * 2, MAX_RETRY_S)
    notifier.stopping("stopped before Redis answered")
    return False


async def check_notifications(
    storage: aioredis.Redis, listener: Subscriber, canary_key: str, *, manage: bool, required: str
) -> NotifyState:
    """Merge the flags expired events need, run the doctor, and prove events arrive."""
    try:
        await asyncio.wait_for(listener.subscribed.wait(), SUBSCRIBE_WAIT_S)
    except TimeoutError:
        log.warning("redis.subscribe_slow", note="continuing; the sweep delivers regardless")
    state = await ensure_notifications(storage, manage=manage, required=required)
    state.warnings = await doctor(storage)
    state.canary = await _canary(storage, listener, canary_key) if state.ok else "skipped"
    return state


def canary_key(names: Names, instance: str) -> str:
    """A fresh key for this start's canary."""
    return f"{names.canary_prefix}{instance}:{secrets.token_hex(4)}"


async def _canary(storage: aioredis.Redis, listener: Subscriber, key: str) -> str:
    ok = await prove_events(storage, key, listener.expect_canary(key))
    if ok:
        log.info("redis.canary", result="ok")
        return "ok"
    log.warning(
        "redis.canary", result="failed", effect="expired events do not arrive; delivery relies on the sweep"
    )
    return "failed"


def open_store(settings: Settings, storage: aioredis.Redis, metrics: Metrics) -> Store:
    """The daemon's store in the target's layout (sharded on Cluster), with
    ``redis.wait_replicas`` in force and its short replies counted."""
    durability = Durability.of(settings.redis)
    if durability is not None:
        metrics.count_replication_short(lambda: durability.short)
    return Store(storage, layout_for(settings, storage), durability)
