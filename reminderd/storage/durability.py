"""``redis.wait_replicas``: a claim or a finish acknowledged by replicas before it counts.

Replication is asynchronous: a primary killed after it answered a claim, and before the
claim reached a replica, comes back (promoted) without it, and the occurrence is claimed and
sent again. With ``wait_replicas: N`` the claim and finish scripts are each followed by
``WAIT N timeout`` on the same connection (one non-transactional pipeline of the script
call and ``WAIT``), so the reply comes once N replicas hold the write, or the timeout passed.
``WAIT`` inside a script does not block, and ``WAIT`` on another connection counts that
connection's writes, not the script's: hence the pipeline. A reply with fewer replicas is
counted (``reminderd_replication_short_total``) and logged, at most once per interval; the
write stands either way (``WAIT`` makes nothing synchronous, it only narrows the window).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from reminderd.config.model import RedisSettings

log = structlog.get_logger("reminderd.storage.durability")
WARN_EVERY_S = 60.0


@dataclass(slots=True)
class Durability:
    """How many replicas must acknowledge each claim and finish, and how often they did not."""

    replicas: int
    timeout_ms: int
    short: int = 0  # replies that came with fewer replicas than asked (the metric reads it)
    warn_every_s: float = WARN_EVERY_S
    _warned_at_s: float | None = field(default=None, repr=False)
    _unwarned: int = field(default=0, repr=False)

    @classmethod
    def of(cls, settings: RedisSettings) -> Durability | None:
        """The configured durability, or None when ``wait_replicas`` is 0 (no WAIT at all)."""
        if settings.wait_replicas == 0:
            return None
        return cls(settings.wait_replicas, settings.wait_timeout_ms)

    async def run(
        self, redis: aioredis.Redis, script: AsyncScript, keys: Sequence[str], args: Sequence[str | int]
    ) -> Any:
        """The script's reply, once ``WAIT`` after it on the same connection answered.

        The pipeline calls the script by SHA without redis-py's ``SCRIPT EXISTS`` before
        each pipeline: on ``NOSCRIPT`` (a restarted or promoted server) it loads and retries.
        """
        for _ in range(2):
            async with redis.pipeline(transaction=False) as pipe:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
                pipe.wait(self.replicas, self.timeout_ms)
                reply, acked = await pipe.execute(raise_on_error=False)
            if not isinstance(reply, NoScriptError):
                break
            await redis.script_load(script.script)
        for result in (reply, acked):
            if isinstance(result, Exception):
                raise result
        self.acknowledged(int(acked))
        return reply

    def acknowledged(self, replicas: int, now_s: float | None = None) -> None:
        """Count a ``WAIT`` reply; a short one is logged at most once per ``warn_every_s``."""
        if replicas >= self.replicas:
            return
        self.short += 1
        self._unwarned += 1
        now_s = time.monotonic() if now_s is None else now_s
        if self._warned_at_s is not None and now_s - self._warned_at_s < self.warn_every_s:
            return
        log.warning(
            "redis.replication_short",
            wanted=self.replicas,
            acknowledged=replicas,
            timeout_ms=self.timeout_ms,
            writes=self._unwarned,
            note="a failover now may lose these claims or finishes (a repeated send)",
        )
        self._warned_at_s, self._unwarned = now_s, 0
