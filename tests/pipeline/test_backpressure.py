"""Backpressure from the event loop's lag: a saturated daemon claims less and keeps its timers on time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

import redis.asyncio as aioredis

from reminderd.config import load_config_text
from reminderd.models import Occurrence
from reminderd.pipeline.capacity import CUT_FACTOR, LAG_HIGH_S, Capacity, Throttle
from reminderd.pipeline.runtime import Context, Runtime
from reminderd.storage.names import Names
from reminderd.storage.store import Store
from reminderd.telemetry.metrics import Metrics
from tests.pipeline.harness import running
from tests.pipeline.test_verdicts import config as pipeline_config
from tests.serving import poll_async


def test_the_throttle_cuts_when_the_loop_is_late_and_grows_back_when_it_keeps_up() -> None:
    """A late sample cuts the limit (once per cut interval, by threshold/lag of what was in flight, never
    below the floor); quiet samples grow it back while it binds, and idleness lifts it."""
    throttle = Throttle()
    assert throttle.allowed(1000) == 1000
    throttle.observe(LAG_HIGH_S * 1.2, now_s=10.0, concurrency=1000, in_flight=1000)
    assert throttle.allowed(1000) == int(1000 * CUT_FACTOR)
    throttle.observe(1.0, now_s=10.01, concurrency=1000, in_flight=1000)  # within the cut interval
    assert throttle.allowed(1000) == int(1000 * CUT_FACTOR)
    throttle.observe(LAG_HIGH_S * 4, now_s=10.2, concurrency=1000, in_flight=400)
    assert throttle.allowed(1000) == 100  # what was in flight, scaled by threshold / lag
    for i in range(100):
        throttle.observe(2.0, now_s=11.0 + i, concurrency=1000, in_flight=0)
    assert throttle.allowed(1000) == 50  # the floor: a twentieth of the concurrency
    assert not throttle.observe(0.001, now_s=111.5, concurrency=1000, in_flight=10)  # not binding: no growth
    quiet = 0
    while throttle.limit is not None:
        assert throttle.observe(0.001, now_s=112.0 + quiet / 100, concurrency=1000, in_flight=throttle.limit)
        quiet += 1
    assert quiet <= 20
    throttle.observe(2.0, now_s=130.0, concurrency=1000, in_flight=1000)
    assert throttle.limit is not None
    assert throttle.observe(0.001, now_s=131.5, concurrency=1000, in_flight=0)  # idle past the reset
    assert throttle.limit is None


async def test_a_stalled_loop_cuts_what_may_be_claimed_until_it_keeps_up(aredis: aioredis.Redis) -> None:
    """Three 150 ms stalls of the loop take free slots below the concurrency; then they come back."""
    settings = load_config_text("daemon:\n  concurrency: 400\n")
    capacity = Capacity(Context(Store(aredis, Names("t")), Runtime(settings, {}, {}), Metrics(), "i"))
    try:
        assert capacity.free() == 400  # also arms the lag probe
        for _ in range(3):
            await asyncio.sleep(0.03)
            time.sleep(3 * LAG_HIGH_S)  # the loop stalls: the probe fires this late
        await poll_async(lambda: [capacity.free()], lambda seen: seen[0] < 400, timeout_s=2)
        await poll_async(lambda: [capacity.free()], lambda seen: seen == [400], timeout_s=5)
    finally:
        capacity.close()


class Burner:
    """A processor that costs ``steps`` × ``step_s`` of CPU on the loop, yielding between steps."""

    def __init__(self, steps: int, step_s: float) -> None:
        self.steps, self.step_s, self.done = steps, step_s, 0

    async def __call__(self, occ: Occurrence) -> Mapping[str, str] | None:
        """Burn, yield, burn: like an HTTP call's callbacks, all on the loop."""
        for _ in range(self.steps):
            end = time.perf_counter() + self.step_s
            while time.perf_counter() < end:
                pass
            await asyncio.sleep(0)
        self.done += 1
        return None

    async def aclose(self) -> None:
        """Nothing to release."""


async def _worst_timer_lag_s(stop: asyncio.Event, counting: Callable[[], bool]) -> float:
    """The latest a 50 ms timer ran while ``counting()`` holds."""
    loop = asyncio.get_running_loop()
    worst = 0.0
    while not stop.is_set():
        due = loop.time() + 0.05
        await asyncio.sleep(0.05)
        if counting():
            worst = max(worst, loop.time() - due)
    return worst


async def test_a_cpu_bound_backlog_is_claimed_in_step_with_what_the_loop_can_run(redis_url: str) -> None:
    """3,000 due, each 1.5 ms of loop CPU, concurrency 1000: all done, and once the first (full) claim
    is through, a timer runs within 300 ms (at full concurrency a pass over the ready tasks is 0.5 s)."""
    burner = Burner(steps=3, step_s=0.0005)
    config = {"concurrency": 1000, "sweep_batch": 1000}
    async with running(redis_url, pipeline_config(("burn",), daemon=config), {"burn": burner}) as p:
        now = await p.now_ms()
        for i in range(3000):
            await p.schedule(now - 10, key=f"send_message-{i}-bp")
        stop = asyncio.Event()
        watch = asyncio.create_task(_worst_timer_lag_s(stop, lambda: 1100 <= burner.done < 3000))
        timer = asyncio.create_task(p.intake.run_timer())
        try:
            await poll_async(lambda: [burner.done], lambda seen: seen[0] >= 3000, timeout_s=60)
        finally:
            stop.set()
            timer.cancel()
            worst_s = await watch
            p.intake.capacity.close()
        assert worst_s < 0.3, f"a 50 ms timer ran {worst_s:.3f}s late"
