"""A periodic job as a plain loop of the daemon's task group (see docs/ARCHITECTURE.md).

One loop per job: it sleeps on the monotonic clock until the next tick, runs the job, and
only then looks at the clock again, so a job never overlaps itself and late ticks coalesce
into one run. The interval is read before every sleep, and ``poke`` ends a sleep early, so
a reload that changes it takes effect at once. A lost Redis connection is logged once with
the delay, backed off, and reported to ``Health`` (as is the first success after it); any
other error is logged and the job runs again at its next tick. ``CancelledError`` is never
caught: cancelling the task (the daemon stopping) ends the loop, mid-run if need be, which
is safe because every state change of the jobs is one atomic Redis script. A cancel that a
job's library swallowed (redis-py 8.1 can, inside a pipeline) still ends the loop after
that run, since the daemon's task group waits for every loop it cancelled.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog
from redis.exceptions import RedisError

from reminderd.storage.connection import REDIS_DOWN
from reminderd.telemetry.health import Health

log = structlog.get_logger("reminderd.daemon.periodic")
BACKOFF_CAP_S = 5.0  # a backed-off retry waits at most this long, or one interval if longer


def next_tick_s(last_tick_s: float, delay_s: float, now_s: float) -> float:
    """The monotonic time of the next run: ``delay_s`` after the last tick, or now if that
    has passed (the ticks a slow run overlapped coalesce into this one)."""
    return max(last_tick_s + delay_s, now_s)


def retry_delay_s(interval_s: float, failures: int) -> float:
    """The wait after ``failures`` Redis errors in a row: the interval doubled per failure,
    capped at ``BACKOFF_CAP_S`` (or the interval itself, when that is longer)."""
    return min(interval_s * (1 << min(failures, 32)), max(interval_s, BACKOFF_CAP_S))


@dataclass(slots=True)
class PeriodicLoop:
    """Run ``job`` every ``interval_ms()`` until cancelled; ``run`` is the task's coroutine.

    With ``health``, the job is one that always talks to Redis: a success reports Redis
    reachable, a lost connection reports it unreachable (``/readyz`` follows both ways).
    """

    name: str
    job: Callable[[], Awaitable[None]]
    interval_ms: Callable[[], int]
    run_now: bool = False
    health: Health | None = None
    failures: int = field(default=0, init=False)  # Redis connection errors in a row
    _poked: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)

    def poke(self) -> None:
        """Look at the interval again now (it may have changed) instead of at the next tick."""
        self._poked.set()

    async def run(self) -> None:
        """Tick, run, repeat; never two runs at once."""
        tick_s = time.monotonic()
        if self.run_now:
            await self.run_once()
        while True:
            tick_s = await self._sleep_after(tick_s)
            await self.run_once()

    async def run_once(self) -> None:
        """One run of the job, its failure logged and reported, never raised."""
        try:
            await self.job()
        except REDIS_DOWN as exc:
            self._redis_lost(exc)
        except RedisError as exc:  # Redis answered, with an error: reachability unchanged
            log.warning("periodic.redis_error", job=self.name, error=str(exc))
        except Exception:
            log.exception("periodic.failed", job=self.name)
        else:
            self._succeeded()
        _end_if_cancelled()

    def _delay_s(self) -> float:
        interval_s = self.interval_ms() / 1000
        return retry_delay_s(interval_s, self.failures) if self.failures else interval_s

    async def _sleep_after(self, last_tick_s: float) -> float:
        """Sleep until the tick after ``last_tick_s`` (re-planned on each poke); that tick."""
        while True:
            self._poked.clear()
            tick_s = next_tick_s(last_tick_s, self._delay_s(), time.monotonic())
            try:
                async with asyncio.timeout(tick_s - time.monotonic()):
                    await self._poked.wait()
            except TimeoutError:
                return tick_s

    def _redis_lost(self, exc: BaseException) -> None:
        self.failures += 1
        if self.health is not None:
            self.health.redis_reachable = False
        if self.failures == 1:
            log.warning("periodic.redis_down", job=self.name, error=str(exc), retry_in_s=self._delay_s())

    def _succeeded(self) -> None:
        if self.health is not None:
            self.health.redis_reachable = True
        if self.failures:
            log.info("periodic.redis_back", job=self.name, failures=self.failures)
            self.failures = 0


def _end_if_cancelled() -> None:
    """Raise ``CancelledError`` if this task was asked to stop, even though the run returned."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
