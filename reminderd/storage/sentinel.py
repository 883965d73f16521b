"""Redis Sentinel: find the primary, never settle for a replica, and notice when it moves.

redis-py asks the sentinels for the primary's address whenever a connection opens, but it
neither checks what answers there (a stale address may be a replica, which takes reads and
subscriptions and never emits an expired event) nor listens for a failover. So here:

- every connection asks ``ROLE`` after connecting and refuses anything but a primary, so
  the command (or the subscription) retries and asks the sentinels again;
- the sentinels are asked without retries and with short timeouts, so a dead sentinel
  costs nothing and the next one is asked at once;
- ``PrimaryWatch`` listens for ``+switch-master`` on every sentinel, and notices a command
  that met ``READONLY`` (its primary was demoted); each is one ``PrimaryChange`` for the
  daemon, which drops the pools (``PrimaryWatch.reconnect``), re-applies the notification
  flags (``CONFIG SET`` is not replicated) and sweeps.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis
import structlog
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoPermissionError, ReadOnlyError, RedisError

from reminderd.config.sentinel import SentinelSettings

log = structlog.get_logger("reminderd.storage.sentinel")
SENTINEL_TIMEOUT_S = 0.5  # a sentinel answers in a millisecond; one that does not is skipped
SWITCH_CHANNEL = "+switch-master"


def sentinel_options(spec: SentinelSettings) -> dict[str, Any]:
    """Connection options for the sentinels themselves: no retries, short timeouts.

    With redis-py's default retries a dead first sentinel cost 4.57 s per discovery; with
    these, nothing measurable: the next sentinel is asked at once.
    """
    options: dict[str, Any] = {
        "retry": Retry(NoBackoff(), 0),
        "socket_timeout": SENTINEL_TIMEOUT_S,
        "socket_connect_timeout": SENTINEL_TIMEOUT_S,
    }
    if spec.sentinel_username:
        options["username"] = spec.sentinel_username
    if spec.sentinel_password:
        options["password"] = spec.sentinel_password
    return options


class PrimaryOnlyConnection(SentinelManagedConnection):
    """A connection to the primary the sentinels name, proven by ``ROLE`` once connected."""

    async def on_connect_check_health(self, check_health: bool = True) -> None:
        """Authenticate and select as usual, then refuse a server that is not a primary."""
        await super().on_connect_check_health(check_health=check_health)
        if not self.connection_pool.is_master:
            return
        await self.send_command("ROLE", check_health=False)
        try:
            reply = await self.read_response()
        except NoPermissionError:
            reply = ["master"]  # an ACL without ROLE: READONLY on the first write is the check left
        role = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
        if role != "master":
            raise RedisConnectionError(f"{self.host}:{self.port} answers as a {role}, not the primary")
        self.connection_pool.connected.set()

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        """As redis-py (a READONLY reply drops the connection), and tell the pool it happened."""
        try:
            return await super().read_response(*args, **kwargs)
        except RedisConnectionError as exc:
            if isinstance(exc.__context__, ReadOnlyError):
                self.connection_pool.readonly_seen.set()
            raise


class WatchedPool(SentinelConnectionPool):
    """A sentinel-backed pool of primary-only connections that remembers a READONLY reply."""

    def __init__(self, service_name: str, sentinel_manager: Sentinel, **kwargs: Any) -> None:
        kwargs.setdefault("connection_class", PrimaryOnlyConnection)
        super().__init__(service_name, sentinel_manager, **kwargs)  # type: ignore[no-untyped-call]
        self.readonly_seen = asyncio.Event()
        self.connected = asyncio.Event()  # set by each connection that proved it reached the primary


class BlockingWatchedPool(WatchedPool, BlockingConnectionPool):
    """The storage pool: waits for a free connection instead of failing (see ``make_client``)."""


class SentinelRedis(aioredis.Redis):
    """A client on the sentinels' primary; closing it closes its sentinel connections too."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        """Close the pool, then the connections to the sentinels it asked."""
        await super().aclose(close_connection_pool)
        await watched_pool(self).sentinel_manager.aclose()


def watched_pool(client: aioredis.Redis) -> WatchedPool:
    """The pool of a client made by ``sentinel_client``."""
    return cast(WatchedPool, client.connection_pool)


def sentinel_client(
    spec: SentinelSettings, kwargs: dict[str, Any], *, subscriber: bool, timeout_s: float
) -> aioredis.Redis:
    """A client on the primary named ``spec.master``; ``kwargs`` as for any storage client."""
    kwargs = {**kwargs, "db": spec.db}
    if spec.username:
        kwargs["username"] = spec.username
    if spec.password:
        kwargs["password"] = spec.password
    manager = Sentinel(spec.addresses, sentinel_kwargs=sentinel_options(spec))  # type: ignore[no-untyped-call]
    if subscriber:
        client = manager.master_for(spec.master, SentinelRedis, WatchedPool, **kwargs)
    else:
        kwargs["timeout"] = timeout_s  # how long a command waits for a free connection
        client = manager.master_for(spec.master, SentinelRedis, BlockingWatchedPool, **kwargs)
    return cast(SentinelRedis, client)


@dataclass(frozen=True, slots=True)
class PrimaryChange:
    """The primary moved: a sentinel announced it, or a command met a demoted one."""

    reason: str  # "switch-master" or "readonly"
    address: str | None = None  # host:port of the new primary, as the sentinel announced it


class PrimaryWatch:
    """Listens on every sentinel for ``+switch-master`` and on the clients' pools for READONLY."""

    def __init__(self, spec: SentinelSettings, clients: Sequence[aioredis.Redis]) -> None:
        self.spec = spec
        self.clients = clients
        self._changes: asyncio.Queue[PrimaryChange] = asyncio.Queue()
        self._announced: str | None = None  # every sentinel announces the same switch

    async def run(self) -> None:
        """Listen until cancelled (a task of the daemon's task group)."""
        async with asyncio.TaskGroup() as tg:
            for host, port in self.spec.addresses:
                tg.create_task(self._listen(host, port), name=f"sentinel-{host}:{port}")
            for client in self.clients:
                tg.create_task(self._readonly(watched_pool(client)))

    async def changed(self) -> PrimaryChange:
        """The next change; changes queued meanwhile are one (one reconnect covers them)."""
        change = await self._changes.get()
        while not self._changes.empty():
            self._changes.get_nowait()
        return change

    async def reconnect(self, timeout_s: float) -> str:
        """Drop every pooled connection, so the next command asks the sentinels again; wait
        until the first client's primary answers and every client has connected to a primary
        again (the subscriber's pub/sub reconnects on its own); the primary's address."""
        pools = [watched_pool(client) for client in self.clients]
        for pool in pools:
            pool.connected.clear()
            await pool.disconnect(inuse_connections=True)
        deadline, delay_s = time.monotonic() + timeout_s, 0.05
        while True:
            try:
                await self.clients[0].ping()
                break
            except RedisError:
                if time.monotonic() + delay_s > deadline:
                    raise
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 1.0)
        for pool in pools:
            await asyncio.wait_for(pool.connected.wait(), max(0.0, deadline - time.monotonic()))
        host, port = pools[0].master_address or ("?", 0)
        return f"{host}:{port}"

    def _announce(self, data: str) -> None:
        """``<master> <old-ip> <old-port> <new-ip> <new-port>``, from one sentinel."""
        parts = data.split()
        if len(parts) != 5 or parts[0] != self.spec.master:
            return
        address = f"{parts[3]}:{parts[4]}"
        if address != self._announced:
            self._announced = address
            log.warning("redis.switch_master", master=parts[0], old=f"{parts[1]}:{parts[2]}", new=address)
            self._changes.put_nowait(PrimaryChange("switch-master", address))

    async def _readonly(self, pool: WatchedPool) -> None:
        while True:
            await pool.readonly_seen.wait()
            pool.readonly_seen.clear()
            log.warning("redis.readonly", note="the primary was demoted to a replica; asking the sentinels")
            self._changes.put_nowait(PrimaryChange("readonly"))

    async def _listen(self, host: str, port: int) -> None:
        """Subscribe to one sentinel's switch announcements, reconnecting with backoff."""
        delay_s, where = 0.1, f"{host}:{port}"
        while True:
            options = sentinel_options(self.spec)
            client = aioredis.Redis(host=host, port=port, decode_responses=True, **options)
            try:
                async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(SWITCH_CHANNEL)
                    if delay_s > 0.1:
                        log.info("redis.sentinel_listening", sentinel=where)
                    delay_s = 0.1
                    while True:
                        msg = await pubsub.get_message(timeout=5.0)
                        if msg is not None:
                            self._announce(str(msg["data"]))
            except (RedisError, OSError) as exc:
                if delay_s == 0.1:
                    log.warning("redis.sentinel_unreachable", sentinel=where, error=str(exc))
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 5.0)
            finally:
                await client.aclose()
