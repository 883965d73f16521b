"""Redis clients built from the settings, with one clear error when Redis is away.

``redis.url: embedded`` resolves to the unix socket of the private server in the state
directory (see ``reminderd.storage.embedded``); the daemon starts that server, the CLI and API
reuse it. A ``redis+sentinel://`` URL (``redis.sentinel``) reaches the primary the sentinels
name (``reminderd.storage.sentinel``). ``redis+cluster://`` (``redis.cluster``) gets the
slot-routing client (``reminderd.storage.cluster``), on which the store runs sharded.
"""

from __future__ import annotations

import errno
import os
import ssl
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis
import structlog
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from reminderd.config.cluster import CLUSTER_SCHEMES
from reminderd.config.model import RedisSettings
from reminderd.config.sentinel import SENTINEL_SCHEME, SentinelSettings, parse_sentinel_url
from reminderd.config.transport import TlsSettings
from reminderd.core.pii import mask_url
from reminderd.errors import RedisUnavailableError
from reminderd.storage.cluster import cluster_client, cluster_spec
from reminderd.storage.embedded import EmbeddedRedis, connect_or_start
from reminderd.storage.embedded_access import Access
from reminderd.storage.embedded_setup import state_dir
from reminderd.storage.sentinel import sentinel_client

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


def tls_kwargs(tls: TlsSettings) -> dict[str, Any]:
    """redis-py's TLS arguments from ``redis.tls`` (only for ``rediss://``: plain ones reject them)."""
    files = {"ssl_ca_certs": tls.ca_file, "ssl_certfile": tls.cert_file, "ssl_keyfile": tls.key_file}
    return {
        "ssl_cert_reqs": "required" if tls.verify else "none",
        "ssl_check_hostname": tls.verify and tls.check_hostname,
        **{name: path for name, path in files.items() if path},
    }


def make_client(settings: RedisSettings, url: str, *, subscriber: bool = False) -> aioredis.Redis:
    """A client for ``url`` (already resolved from ``embedded``); no I/O happens here.

    The storage pool blocks (up to the socket timeout) when all connections are busy
    instead of failing: a burst of concurrent processors must queue, not error.
    """
    if url.startswith(CLUSTER_SCHEMES):
        if subscriber:
            raise ValueError("a cluster has a subscriber per primary: see pipeline.cluster_watch")
        # The routing client speaks the commands the store sends as a plain client would.
        return cast(aioredis.Redis, cluster_client(settings, cluster_spec(settings, url)))
    kwargs = client_kwargs(settings, subscriber=subscriber)
    if url.startswith(SENTINEL_SCHEME):
        spec, timeout_s = sentinel_spec(settings, url), settings.socket_timeout_ms / 1000
        return sentinel_client(spec, kwargs, subscriber=subscriber, timeout_s=timeout_s)
    if url.startswith("rediss://"):
        kwargs.update(tls_kwargs(settings.tls))
    if subscriber:
        return aioredis.Redis.from_url(url, **kwargs)
    pool = aioredis.BlockingConnectionPool.from_url(url, timeout=settings.socket_timeout_ms / 1000, **kwargs)
    return aioredis.Redis.from_pool(pool)  # the client owns (and closes) its pool


def sentinel_spec(settings: RedisSettings, url: str) -> SentinelSettings:
    """The sentinel settings of ``url``: the configured ones (with their credentials) if it is
    their URL, else what the URL itself says (``Reminders("redis+sentinel://...", settings)``)."""
    if settings.sentinel is not None and settings.sentinel.url == url:
        return settings.sentinel
    return SentinelSettings.model_validate(parse_sentinel_url(url))


def db_of(client: aioredis.Redis) -> int:
    """The logical database a client talks to (for the expired-event channel name)."""
    return int(client.connection_pool.connection_kwargs.get("db", 0) or 0)


async def resolve_url(settings: RedisSettings, stack: AsyncExitStack, *, own: bool) -> str:
    """The URL to connect to: ``redis.url``, or for ``embedded`` the private server, entered
    into ``stack``. ``own`` (the daemon) starts and supervises it; otherwise (CLI, API) the
    running one is reused, or one started for the life of ``stack`` where it holds data: a
    command never quietly starts a new, empty Redis that no daemon reads."""
    if settings.url != "embedded":
        return settings.url
    if not own:
        opened = connect_or_start(
            state_dir(settings.embedded), settings.embedded.binary, create=False, access=Access.of(settings)
        )
        return await stack.enter_async_context(opened)
    server = await stack.enter_async_context(EmbeddedRedis.for_settings(settings))
    log.info("redis.embedded", url=server.url, pid=server.pid)
    return server.url


def reason_of(exc: BaseException) -> str:
    """The root cause of a connection failure in a few words (``Connection refused``)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, TimeoutError | RedisTimeoutError):
            return "timed out"
        if isinstance(current, ssl.SSLError):  # its errno is OpenSSL's, not the OS's (1 is not EPERM)
            return tls_reason(current)
        if isinstance(current, OSError) and current.errno is not None and current.errno in errno.errorcode:
            return os.strerror(current.errno)
        current = current.__cause__ or current.__context__
    text = str(exc).strip()
    return text or type(exc).__name__


def tls_reason(exc: ssl.SSLError) -> str:
    """``TLS: CERTIFICATE_VERIFY_FAILED (self-signed certificate)``: OpenSSL's reason and detail."""
    detail = exc.verify_message if isinstance(exc, ssl.SSLCertVerificationError) else None
    reason = exc.reason or type(exc).__name__
    return f"TLS: {reason}" + (f" ({detail})" if detail else "")


def unreachable(url: str, exc: BaseException) -> RedisUnavailableError:
    """The error raised when ``url`` cannot be reached; the message is the one line shown."""
    return RedisUnavailableError(f"cannot reach Redis at {mask_url(url)}: {reason_of(exc)}")


UNREACHABLE_HINT = (
    "check redis.url (or $REMINDERD_REDIS_URL) or redis.sentinel: that a server runs there, "
    "accepts connections from this host, and takes redis.username/redis.password"
)


@dataclass(slots=True)
class UnreachableNotice:
    """When a daemon that cannot reach Redis says so: at the first failure, then once a minute.

    A retry every few seconds is right for reconnecting, wrong for the log: the operator
    needs the URL and what to check once, and then a reminder that it is still so.
    """

    url: str
    every_s: float = 60.0
    last_s: float | None = None

    def due(self, now_s: float) -> bool:
        """True if a line is owed at ``now_s`` (monotonic seconds); remembers that it was."""
        if self.last_s is not None and now_s - self.last_s < self.every_s:
            return False
        self.last_s = now_s
        return True

    def fields(self, exc: BaseException) -> dict[str, str]:
        """The log line's fields: the masked URL, the reason in a few words, what to check."""
        return {"url": mask_url(self.url), "error": reason_of(exc), "check": UNREACHABLE_HINT}
