"""Who is alive: each daemon's heartbeat (host, pid, version, uptime, last sweep).

``status`` reads these to list live daemons; a clean shutdown removes its own at once so
the list never shows a daemon that said goodbye. Every time in a heartbeat is on Redis's
clock, which every reader shares: a daemon whose host clock is off still counts as alive,
and its offset (``clock_offset_ms``, Redis minus host) is in the heartbeat for ``status``.
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
from reminderd.storage.names import Names

log = structlog.get_logger("reminderd.storage.presence")


@dataclass(slots=True)
class Identity:
    """This daemon instance."""

    instance: str
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    started_ms: int = field(default_factory=lambda: int(time.time() * 1000))


async def clock_offset_ms(client: aioredis.Redis) -> tuple[int, int]:
    """Redis's clock now and this host's offset from it (Redis minus host), in milliseconds.

    The host's time is taken at the middle of the ``TIME`` round trip.
    """
    before_s = time.time()
    sec, usec = await client.time()
    host_ms = round((before_s + time.time()) * 500)
    redis_ms = int(sec) * 1000 + int(usec) // 1000
    return redis_ms, redis_ms - host_ms


async def beat(
    client: aioredis.Redis, names: Names, me: Identity, interval_ms: int, extra: dict[str, Any]
) -> int:
    """Write this instance's heartbeat (expires after three missed beats); the clock offset in ms."""
    now, offset_ms = await clock_offset_ms(client)
    body = {
        "instance": me.instance,
        "host": me.host,
        "pid": me.pid,
        "version": __version__,
        "started_ms": me.started_ms + offset_ms,
        "beat_ms": now,
        "clock_offset_ms": offset_ms,
        **extra,
    }
    async with client.pipeline(transaction=False) as pipe:
        pipe.set(names.heartbeat(me.instance), json.dumps(body), px=interval_ms * 3)
        pipe.zadd(names.daemons, {me.instance: now})
        pipe.zremrangebyscore(names.daemons, "-inf", now - interval_ms * 20)
        await pipe.execute()
    return offset_ms


async def retire(client: aioredis.Redis, names: Names, me: Identity) -> None:
    """Remove this instance's heartbeat at a clean shutdown."""
    async with client.pipeline(transaction=False) as pipe:
        pipe.delete(names.heartbeat(me.instance))
        pipe.zrem(names.daemons, me.instance)
        await pipe.execute()
