"""Who is alive, and did Redis change under us?

Each daemon writes a heartbeat (host, pid, version, uptime, last sweep) that ``status``
reads. The same job watches Redis's ``run_id`` and replication id: a new value means a
restart or failover, so events may have been lost and the flags may be gone.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
import structlog

from reminderd import __version__
from reminderd.keys import Names

log = structlog.get_logger("reminderd.heartbeat")


@dataclass(slots=True)
class Identity:
    """This daemon instance."""

    instance: str
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    started_ms: int = field(default_factory=lambda: int(time.time() * 1000))


@dataclass(slots=True)
class ServerIdentity:
    """What identifies the Redis data set we talk to."""

    run_id: str
    replid: str
    keys: int


async def beat(
    client: aioredis.Redis, names: Names, me: Identity, interval_ms: int, extra: dict[str, Any]
) -> None:
    """Write this instance's heartbeat (expires after three missed beats)."""
    now = int(time.time() * 1000)
    body = {
        "instance": me.instance,
        "host": me.host,
        "pid": me.pid,
        "version": __version__,
        "started_ms": me.started_ms,
        "beat_ms": now,
        **extra,
    }
    async with client.pipeline(transaction=False) as pipe:
        pipe.set(names.heartbeat(me.instance), json.dumps(body), px=interval_ms * 3)
        pipe.zadd(names.daemons, {me.instance: now})
        pipe.zremrangebyscore(names.daemons, "-inf", now - interval_ms * 20)
        await pipe.execute()


async def retire(client: aioredis.Redis, names: Names, me: Identity) -> None:
    """Remove this instance's heartbeat at a clean shutdown."""
    async with client.pipeline(transaction=False) as pipe:
        pipe.delete(names.heartbeat(me.instance))
        pipe.zrem(names.daemons, me.instance)
        await pipe.execute()


async def server_identity(client: aioredis.Redis) -> ServerIdentity:
    """The server's run id, replication id and key count."""
    info = await client.info()
    keys = sum(int(v.get("keys", 0)) for k, v in info.items() if k.startswith("db") and isinstance(v, dict))
    return ServerIdentity(str(info.get("run_id", "")), str(info.get("master_replid", "")), keys)
