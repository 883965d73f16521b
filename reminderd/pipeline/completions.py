"""Batch completions into one script call each.

A drain of 20 000 due reminders is dominated by round trips; completing them one call
each would cost more than the claims. Callers await their own completion, so a failure
to write is never silent; a batch that fails on a Redis error is retried with backoff.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog
from redis.exceptions import RedisError

from reminderd.config.model import Settings
from reminderd.storage.store import Completion, Store

log = structlog.get_logger("reminderd.pipeline.completions")


class Completer:
    """Collects completions and flushes them together (up to ``max_batch``)."""

    def __init__(
        self, store: Store, instance: str, settings: Callable[[], Settings], *, max_batch: int = 500
    ) -> None:
        self.store = store
        self.instance = instance
        self._settings = settings  # read at each write: a reload may change the fired-marker window
        self.max_batch = max_batch
        self._pending: list[tuple[Completion, asyncio.Future[None], str]] = []
        self._wakeup = asyncio.Event()

    async def complete(self, item: Completion, *, stat: str = "fired") -> None:
        """Queue ``item`` and wait until it is written."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((item, fut, stat))
        self._wakeup.set()
        await fut

    async def run(self) -> None:
        """Flush loop; runs until cancelled, then flushes what is left."""
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                await asyncio.sleep(0)  # let the other finishers of this tick join the batch
                await self.flush()
        finally:
            await asyncio.shield(self.flush())

    async def flush(self) -> None:
        """Write everything pending, batch by batch, retrying on Redis errors."""
        while self._pending:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            await self._write(batch)

    async def _write(self, batch: list[tuple[Completion, asyncio.Future[None], str]]) -> None:
        by_stat: dict[str, list[Completion]] = {}
        for item, _, stat in batch:
            by_stat.setdefault(stat, []).append(item)
        delay_s = 0.05
        while True:
            try:
                window_ms = self._settings().daemon.raw_dedupe_window_ms
                for stat, items in by_stat.items():
                    await self.store.complete_many(self.instance, items, stat=stat, fired_window_ms=window_ms)
                break
            except RedisError as exc:
                log.warning("redis.complete_failed", error=str(exc), retry_in_s=delay_s, batch=len(batch))
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 2.0)
        for _, fut, _ in batch:
            if not fut.done():
                fut.set_result(None)
