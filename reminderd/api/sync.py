"""The synchronous facade over ``AsyncReminders``, for scripts and non-async services.

``Reminders.from_config(path)`` reaches the Redis the daemon of that config uses, the way
the CLI does: ``redis.url`` (a ``redis+sentinel://`` one, or ``redis.sentinel``: the
primary the sentinels name), or with ``embedded`` the server in the config's state directory.
It connects at once, so a Redis that is not there is one clear ``RedisUnavailableError`` at
construction, not a traceback from the first call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from reminderd.api.reminders import AsyncReminders, When
from reminderd.config import load_config
from reminderd.config.model import Settings
from reminderd.errors import ConfigError, RedisUnavailableError
from reminderd.models import Reminder
from reminderd.storage.cluster import check_cluster_layout
from reminderd.storage.connection import REDIS_DOWN, make_client, unreachable
from reminderd.storage.embedded_setup import embedded_url, socket_path, state_dir


def resolve_url(url: str, settings: Settings) -> str:
    """``url``, or for ``embedded`` the socket of the server running in the state directory."""
    if url != "embedded":
        return url
    where = state_dir(settings.redis.embedded)
    found = embedded_url(where)
    if found is None:
        raise RedisUnavailableError(
            f"no embedded Redis answers at {socket_path(where)}: start the daemon (reminderd run) "
            "with this config first"
        )
    return found


async def _ping(client: aioredis.Redis, settings: Settings) -> None:
    await client.ping()
    await check_cluster_layout(settings, client)


class Reminders:
    """Schedule and inspect reminders synchronously; one private event loop per instance."""

    def __init__(self, url: str, settings: Settings) -> None:
        """Connect to ``url`` (``"embedded"``: the daemon's embedded server) and check it answers."""
        url = resolve_url(url, settings)
        self._runner = asyncio.Runner()
        self._client = make_client(settings.redis, url)
        self._api = AsyncReminders(self._client, settings)
        try:
            self._runner.run(_ping(self._client, settings))
        except (*REDIS_DOWN, RedisError) as exc:
            self.close()
            raise unreachable(url, exc) from None
        except ConfigError:  # a shard count other than the stored one
            self.close()
            raise

    @classmethod
    def from_config(cls, path: str | Path | None = None) -> Reminders:
        """The API on the Redis of the config at ``path`` (default: the CLI's lookup)."""
        settings = load_config(path)
        return cls(settings.redis.url, settings)

    def __enter__(self) -> Reminders:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool and the private event loop."""
        self._runner.run(self._client.aclose())
        self._runner.close()

    def schedule(self, key: str | None = None, **kwargs: Any) -> Reminder | None:
        """See ``AsyncReminders.schedule``."""
        return self._runner.run(self._api.schedule(key, **kwargs))

    def schedule_many(self, items: Iterable[tuple[str, Mapping[str, Any] | None, When]]) -> int:
        """See ``AsyncReminders.schedule_many``."""
        return self._runner.run(self._api.schedule_many(items))

    def reschedule(self, key: str, **kwargs: Any) -> Reminder:
        """See ``AsyncReminders.reschedule``."""
        return self._runner.run(self._api.reschedule(key, **kwargs))

    def cancel(self, key: str) -> bool:
        """See ``AsyncReminders.cancel``."""
        return self._runner.run(self._api.cancel(key))

    def get(self, key: str) -> Reminder | None:
        """See ``AsyncReminders.get``."""
        return self._runner.run(self._api.get(key))

    def list(self, **kwargs: Any) -> list[Reminder]:
        """See ``AsyncReminders.list``."""
        return self._runner.run(self._api.list(**kwargs))
