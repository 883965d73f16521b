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

A short reply also asks ``ROLE`` (at most once per ``RECHECK_S``) how many replicas are
connected. Fewer than asked (after a failover the promoted replica often has none): every
``WAIT`` would block for its whole timeout and acknowledge nothing, so until a recheck finds
enough replicas the scripts run without ``WAIT``, each write counted short. A replica that is
connected but lags is still waited for.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.commands.core import AsyncScript
from redis.exceptions import NoPermissionError, NoScriptError

from reminderd.config.model import RedisSettings

log = structlog.get_logger("reminderd.storage.durability")
WARN_EVERY_S = 60.0
RECHECK_S = 1.0  # how often, while replies are short, ROLE is asked how many replicas are connected


@dataclass(slots=True)
class Durability:
    """How many replicas must acknowledge each claim and finish, and how often they did not."""

    replicas: int
    timeout_ms: int
    short: int = 0  # replies that came with fewer replicas than asked (the metric reads it)
    warn_every_s: float = WARN_EVERY_S
    connected: int | None = None  # replicas connected at the last ROLE (None: not asked yet)
    _warned_at_s: float | None = field(default=None, repr=False)
    _unwarned: int = field(default=0, repr=False)
    _checked_at_s: float = field(default=float("-inf"), repr=False)

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

        With too few replicas connected (see the module) the script runs alone. ``NOSCRIPT``
        (the pipeline calls by SHA) means a restarted or promoted server: load the script,
        count its replicas, and try again.
        """
        now_s = time.monotonic()
        if self._too_few() and self._recheck_due(now_s):
            await self._count_connected(redis, now_s)
        reply = await self._pipelined(redis, script, keys, args, now_s)
        if not isinstance(reply, NoScriptError):
            return reply
        await redis.script_load(script.script)
        await self._count_connected(redis, now_s)
        reply = await self._pipelined(redis, script, keys, args, now_s)
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def _pipelined(
        self,
        redis: aioredis.Redis,
        script: AsyncScript,
        keys: Sequence[str],
        args: Sequence[str | int],
        now_s: float,
    ) -> Any:
        """The script then WAIT on one connection (the script alone with too few replicas);
        the script's reply, or its ``NoScriptError``."""
        if self._too_few():
            reply = await script(keys=keys, args=args)
            self.acknowledged(0, now_s)
            return reply
        async with redis.pipeline(transaction=False) as pipe:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
            pipe.wait(self.replicas, self.timeout_ms)
            reply, acked = await pipe.execute(raise_on_error=False)
        if isinstance(reply, NoScriptError):
            return reply
        for result in (reply, acked):
            if isinstance(result, Exception):
                raise result
        self.acknowledged(int(acked), now_s)
        if int(acked) < self.replicas and self._recheck_due(now_s):
            await self._count_connected(redis, now_s)
        return reply

    def _too_few(self) -> bool:
        return self.connected is not None and self.connected < self.replicas

    def _recheck_due(self, now_s: float) -> bool:
        return now_s - self._checked_at_s >= RECHECK_S

    async def _count_connected(self, redis: aioredis.Redis, now_s: float) -> None:
        """Ask ``ROLE`` how many replicas are connected (an ACL without ROLE: assume enough)."""
        self._checked_at_s = now_s
        try:
            role: Any = await redis.role()
        except NoPermissionError:
            self.connected = None
            return
        self.connected = len(role[2]) if role and str(role[0]) == "master" else 0

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
            connected=self.connected,
            timeout_ms=self.timeout_ms,
            writes=self._unwarned,
            note="a failover now may lose these claims or finishes (a repeated send)",
        )
        self._warned_at_s, self._unwarned = now_s, 0
