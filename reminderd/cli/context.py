"""One Redis connection for one CLI command, with one clear line when Redis is away.

``redis.url: embedded`` reuses the daemon's running private server, or starts one for
the duration of the command (``reminderd.storage.embedded.connect_or_start``), so a reminder
scheduled while the daemon is down is written to the server's AOF and found at the next
start. Every failure to reach Redis, at connect time or halfway through a command,
becomes ``RedisUnavailableError`` naming the URL with its password masked.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from reminderd.api.reminders import AsyncReminders
from reminderd.config import load_config
from reminderd.config.model import Settings
from reminderd.core.pii import mask_url
from reminderd.errors import RedisUnavailableError
from reminderd.storage.connection import REDIS_DOWN, make_client, resolve_url


def reason_of(exc: BaseException) -> str:
    """The root cause of a connection failure in a few words (``Connection refused``)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, TimeoutError | RedisTimeoutError):
            return "timed out"
        if isinstance(current, OSError) and current.errno is not None and current.errno in errno.errorcode:
            return os.strerror(current.errno)
        current = current.__cause__ or current.__context__
    text = str(exc).strip()
    return text or type(exc).__name__


def unreachable(url: str, exc: BaseException) -> RedisUnavailableError:
    """The error raised when ``url`` cannot be reached; the message is the one line shown."""
    return RedisUnavailableError(f"cannot reach Redis at {mask_url(url)}: {reason_of(exc)}")


@asynccontextmanager
async def open_client(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    """A pinged storage client for the block; closed (and any embedded server stopped) after."""
    async with AsyncExitStack() as stack:
        url = await resolve_url(settings.redis, stack, own=False)
        client = make_client(settings.redis, url)
        stack.push_async_callback(client.aclose)
        try:
            await client.ping()
        except (*REDIS_DOWN, RedisError) as exc:
            raise unreachable(url, exc) from exc
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
            async with open_client(settings) as client:
                return await command(Ctx(args, settings, client, AsyncReminders(client, settings)))

        return asyncio.run(go())

    return run
