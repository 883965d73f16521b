"""One Redis connection for one CLI command, with one clear line when Redis is away.

``redis.url: embedded`` reuses the daemon's running private server, or starts one for
the duration of the command (``reminderd.storage.embedded.connect_or_start``), so a reminder
scheduled while the daemon is down is written to the server's AOF and found at the next
start; a state directory where no daemon ever ran is an error naming it and the config.
Every failure to reach Redis, at connect time or halfway through a command, becomes
``RedisUnavailableError`` naming the URL with its password masked.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from reminderd.api.reminders import AsyncReminders
from reminderd.config import load_config, resolve_path
from reminderd.config.model import Settings
from reminderd.core.pii import mask_url
from reminderd.errors import RedisUnavailableError
from reminderd.storage.cluster import check_cluster_layout
from reminderd.storage.connection import REDIS_DOWN, make_client, resolve_url, unreachable

__all__ = ["Command", "Ctx", "mask_url", "open_client", "with_client"]


def config_source(cli_value: str | None) -> str:
    """Which config file a command read, as said in its messages."""
    path, named = resolve_path(cli_value)
    return str(path.absolute()) if named or path.exists() else "none found, built-in defaults"


@asynccontextmanager
async def open_client(settings: Settings, config: str = "") -> AsyncIterator[aioredis.Redis]:
    """A pinged storage client for the block; closed (and any embedded server stopped) after."""
    async with AsyncExitStack() as stack:
        try:
            url = await resolve_url(settings.redis, stack, own=False)
        except RedisUnavailableError as exc:
            raise RedisUnavailableError(f"{exc} (config: {config})") from exc
        client = make_client(settings.redis, url)
        stack.push_async_callback(client.aclose)
        try:
            await client.ping()
        except (*REDIS_DOWN, RedisError) as exc:
            raise unreachable(url, exc) from exc
        await check_cluster_layout(settings, client)
        try:
            yield client
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise unreachable(url, exc) from exc


@dataclass(frozen=True, slots=True)
class Ctx:
    """What a command needs: its arguments, the settings and one Redis client."""

    args: argparse.Namespace
    settings: Settings
    client: aioredis.Redis
    api: AsyncReminders

    async def now_ms(self) -> int:
        """Redis's clock."""
        return await self.api.store.now_ms()


Command = Callable[[Ctx], Awaitable[int]]


def with_client(command: Command) -> Callable[[argparse.Namespace], int]:
    """A synchronous command handler: load the config, open the client, run ``command``."""

    def run(args: argparse.Namespace) -> int:
        settings = load_config(args.config)

        async def go() -> int:
            async with open_client(settings, config_source(args.config)) as client:
                return await command(Ctx(args, settings, client, AsyncReminders(client, settings)))

        return asyncio.run(go())

    return run
