"""Facts about the Redis server: its key events, its identity, its risky settings.

Make Redis announce expired keys (and, for raw keys, writes and deletes of trigger keys),
prove that it does, and report risky settings; tell who
the server is (``run_id``, replication id) so a restart or failover, after which events
may have been lost and the flags may be gone, is noticed.

The flags are merged, never replaced: another application may rely on flags of its own.
Where CONFIG is refused (ACL, renamed command, managed Redis) the daemon says so once,
loudly, with the command to run, and keeps delivering through the sweep alone.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError, ResponseError

from reminderd.storage.server_binary import version_finding

log = structlog.get_logger("reminderd.storage.server")

# In Redis 7, 'A' stands for every class flag ("g$lshzxetd"); 'x' (expired) is one of them.
_ALIAS_A = set("g$lshzxetd")


def required_flags(raw_key_events: bool) -> str:
    """The notify flags reminderd needs: expired events (``Ex``), and with raw-key events the
    keyspace channels (``K``) of generic commands (``g``: ``expire``, ``del``)."""
    return "ExKg" if raw_key_events else "Ex"


def merge_flags(current: str, required: str = "Ex") -> str:
    """``current`` plus whatever of ``required`` it lacks, keeping every existing flag."""
    have = set(current)
    if "A" in have:
        have |= _ALIAS_A
    missing = "".join(ch for ch in required if ch not in have)
    return current + missing


@dataclass(slots=True)
class NotifyState:
    """What the daemon knows about expired-event delivery (reported in status)."""

    flags: str | None = None
    managed: bool = False
    ok: bool = False
    canary: str = "unknown"  # ok | failed | unknown
    problem: str | None = None
    warnings: list[str] = field(default_factory=list)


async def ensure_notifications(client: aioredis.Redis, *, manage: bool, required: str = "Ex") -> NotifyState:
    """Read, merge ``required`` into and (if allowed and managed) set ``notify-keyspace-events``."""
    state = NotifyState(managed=manage)
    try:
        reply = await client.config_get("notify-keyspace-events")
        current = str(reply.get("notify-keyspace-events") or "")
    except ResponseError as exc:
        state.problem = f"cannot read notify-keyspace-events: {exc}"
        _warn_sweep_only(state)
        return state
    state.flags = current
    wanted = merge_flags(current, required)
    if wanted == current:
        state.ok = True
        return state
    if not manage:
        state.problem = (
            f"notify-keyspace-events is {current!r}; reminderd needs {required!r} (management off)"
        )
        _warn_sweep_only(state)
        return state
    try:
        await client.config_set("notify-keyspace-events", wanted)
    except ResponseError as exc:
        state.problem = f"cannot set notify-keyspace-events: {exc}"
        _warn_sweep_only(state)
        return state
    state.flags, state.ok = wanted, True
    log.info("redis.notifications_enabled", before=current, after=wanted)
    return state


def _warn_sweep_only(state: NotifyState) -> None:
    log.warning(
        "redis.notifications_unavailable",
        problem=state.problem,
        effect="reminders are delivered by the sweep alone (within the sweep interval)",
        fix="run: redis-cli CONFIG SET notify-keyspace-events Ex (or set it in redis.conf)",
    )


async def prove_events(
    client: aioredis.Redis, key: str, arrived: asyncio.Future[None], *, timeout_s: float = 2.0
) -> bool:
    """Write a canary with a tiny expiry and wait for its expired event."""
    try:
        await client.set(key, "1", px=5)
        await asyncio.sleep(0.02)
        await client.exists(key)  # an access expires it at once rather than at the next cycle
        await asyncio.wait_for(asyncio.shield(arrived), timeout_s)
    except (TimeoutError, RedisError):
        return False
    return True


async def doctor(client: aioredis.Redis) -> list[str]:
    """Settings that silently lose or delay reminders; one line each."""
    try:
        info = await client.info()
    except RedisError as exc:
        return [f"cannot run INFO: {exc}"]
    old = version_finding(info)
    found = [old] if old else []
    if info.get("role") != "master":
        found.append("connected to a replica: writes fail and replicas never emit expired events")
    if int(info.get("cluster_enabled", 0)):
        found.append("Redis Cluster: reminderd needs a single primary (or Sentinel); see README")
    found += await settings_findings(client, info)
    for line in found:
        log.warning("redis.doctor", finding=line)
    return found


async def node_findings(client: aioredis.Redis, info: dict[str, Any]) -> list[str]:
    """What one server's ``INFO`` and CONFIG say against keeping reminders: its version, no
    persistence, an eviction policy. On Cluster the doctor runs this on every node."""
    old = version_finding(info)
    return ([old] if old else []) + await settings_findings(client, info)


async def settings_findings(client: aioredis.Redis, info: dict[str, Any]) -> list[str]:
    """No persistence, or an eviction policy: a restart or memory pressure loses reminders."""
    found = []
    persistence = await config_value(client, "save")
    if not int(info.get("aof_enabled", 0)) and persistence == "":
        found.append("no persistence (no AOF, no RDB): a Redis restart loses every reminder")
    policy = await config_value(client, "maxmemory-policy")
    if policy and policy != "noeviction":
        found.append(f"maxmemory-policy is {policy}: Redis may evict reminders; use noeviction")
    return found


async def config_value(client: aioredis.Redis, name: str) -> str | None:
    """One CONFIG value, or None where CONFIG is not allowed."""
    try:
        return str((await client.config_get(name)).get(name, ""))
    except ResponseError:
        return None


@dataclass(slots=True)
class ServerIdentity:
    """What identifies the Redis data set we talk to."""

    run_id: str
    replid: str
    keys: int


async def server_identity(client: aioredis.Redis) -> ServerIdentity:
    """The server's run id, replication id and key count."""
    info = await client.info()
    keys = sum(int(v.get("keys", 0)) for k, v in info.items() if k.startswith("db") and isinstance(v, dict))
    return ServerIdentity(str(info.get("run_id", "")), str(info.get("master_replid", "")), keys)
