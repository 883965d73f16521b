"""Redis clients built from the settings, with one clear error when Redis is away.

``redis.url: embedded`` resolves to the unix socket of the private server in the state
directory (see ``reminderd.storage.embedded``); the daemon starts that server, the CLI and API
reuse it.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from reminderd.config.model import RedisSettings
from reminderd.storage.embedded import EmbeddedRedis, connect_or_start

REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)
log = structlog.get_logger(__name__)


def client_kwargs(settings: RedisSettings, *, subscriber: bool = False) -> dict[str, Any]:
    """Keyword arguments shared by storage and subscriber clients."""
    kwargs: dict[str, Any] = {
        "decode_responses": True,
        "encoding_errors": "surrogateescape",
        "socket_connect_timeout": settings.connect_timeout_ms / 1000,
        "retry": Retry(ExponentialBackoff(cap=2, base=0.05), 3),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
        "health_check_interval": 15,
    }
    # The subscriber waits for messages indefinitely; a read timeout would drop it.
    kwargs["socket_timeout"] = None if subscriber else settings.socket_timeout_ms / 1000
    if not subscriber:
        kwargs["max_connections"] = settings.max_connections
    if settings.username:
        kwargs["username"] = settings.username
    if settings.password:
        kwargs["password"] = settings.password
    return kwargs


def make_client(settings: RedisSettings, url: str, *, subscriber: bool = False) -> aioredis.Redis:
    """A client for ``url`` (already resolved from ``embedded``); no I/O happens here.

    The storage pool blocks (up to the socket timeout) when all connections are busy
    instead of failing: a burst of concurrent processors must queue, not error.
    """
    kwargs = client_kwargs(settings, subscriber=subscriber)
    if subscriber:
        return aioredis.Redis.from_url(url, **kwargs)
    pool = aioredis.BlockingConnectionPool.from_url(url, timeout=settings.socket_timeout_ms / 1000, **kwargs)
    return aioredis.Redis.from_pool(pool)  # the client owns (and closes) its pool


def db_of(client: aioredis.Redis) -> int:
    """The logical database a client talks to (for the expired-event channel name)."""
    return int(client.connection_pool.connection_kwargs.get("db", 0) or 0)


async def resolve_url(settings: RedisSettings, stack: AsyncExitStack, *, own: bool) -> str:
    """The URL to connect to: ``redis.url``, or for ``embedded`` the private server, entered
    into ``stack``. ``own`` (the daemon) starts and supervises it; otherwise (CLI, API) the
    running one is reused, or one started for the life of ``stack``."""
    if settings.url != "embedded":
        return settings.url
    state_dir = Path(settings.embedded.dir) if settings.embedded.dir else None
    if not own:
        return await stack.enter_async_context(connect_or_start(state_dir, settings.embedded.binary))
    server = await stack.enter_async_context(EmbeddedRedis(state_dir, settings.embedded.binary))
    log.info("redis.embedded", url=server.url, pid=server.pid)
    return server.url
