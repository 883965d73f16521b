"""The daemon's periodic loop: ticks, no overlap, live intervals, Redis backoff, cancellation."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from structlog.testing import capture_logs

from reminderd.daemon.periodic import BACKOFF_CAP_S, PeriodicLoop, next_tick_s, retry_delay_s
from reminderd.telemetry.health import Health


async def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Poll ``condition`` until it holds; fail the test at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached before the deadline")
        await asyncio.sleep(0.002)


async def stopped(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait until it has ended."""
    task.cancel()
    await asyncio.wait({task}, timeout=5)
    assert task.cancelled()


def test_next_tick_keeps_the_grid_and_coalesces_late_ticks() -> None:
    """The next tick is one delay after the last; once that has passed, it is now (one run, not many)."""
    assert next_tick_s(10.0, 2.0, 11.0) == 12.0
    assert next_tick_s(10.0, 2.0, 17.5) == 17.5


@pytest.mark.parametrize(
    ("interval_s", "failures", "delay_s"),
    [(0.2, 1, 0.4), (0.2, 2, 0.8), (0.2, 5, BACKOFF_CAP_S), (30.0, 1, 30.0), (1.0, 10_000, BACKOFF_CAP_S)],
)
def test_retry_delay_doubles_up_to_the_cap(interval_s: float, failures: int, delay_s: float) -> None:
    """After Redis errors the wait doubles per failure, capped at 5 s or the interval if longer."""
    assert retry_delay_s(interval_s, failures) == pytest.approx(delay_s)


async def test_job_runs_repeatedly_on_its_interval_grid() -> None:
    """A loop with a 10 ms interval keeps running its job, the k-th run never before k intervals."""
    runs: list[float] = []

    async def tick() -> None:
        runs.append(time.monotonic())

    started_s = time.monotonic()
    task = asyncio.create_task(PeriodicLoop("tick", tick, lambda: 10).run())
    await wait_until(lambda: len(runs) >= 5)
    await stopped(task)
    assert all(at_s >= started_s + (k + 1) * 0.010 for k, at_s in enumerate(runs))


async def test_run_now_runs_at_once_then_waits_an_interval() -> None:
    """With ``run_now`` the first run does not wait its (one-minute) interval; the second does."""
    runs: list[int] = []

    async def tick() -> None:
        runs.append(1)

    loop = PeriodicLoop("beat", tick, lambda: 60_000, run_now=True)
    task = asyncio.create_task(loop.run())
    await wait_until(lambda: len(runs) == 1)
    await asyncio.wait({task}, timeout=0.05)  # a witness window: no second run comes
    assert runs == [1]
    await stopped(task)


async def test_slow_run_never_overlaps_itself() -> None:
    """A run slower than its interval delays the next run, which then comes at once (coalesced)."""
    release = asyncio.Event()
    state = {"active": 0, "max_active": 0, "starts": 0}

    async def slow() -> None:
        state["starts"] += 1
        state["active"] += 1
        state["max_active"] = max(state["max_active"], state["active"])
        try:
            if state["starts"] == 1:
                await release.wait()
        finally:
            state["active"] -= 1

    task = asyncio.create_task(PeriodicLoop("slow", slow, lambda: 5).run())
    await wait_until(lambda: state["starts"] == 1)
    await asyncio.wait({task}, timeout=0.1)  # twenty intervals pass while the first run is busy
    assert state["starts"] == 1
    release.set()
    await wait_until(lambda: state["starts"] >= 3)
    await stopped(task)
    assert state["max_active"] == 1


async def test_poke_applies_a_changed_interval_at_once() -> None:
    """A loop asleep on a one-hour interval runs soon after its interval shrinks and it is poked."""
    interval_ms = {"now": 3_600_000}
    runs: list[int] = []

    async def scan() -> None:
        runs.append(1)

    loop = PeriodicLoop("scan", scan, lambda: interval_ms["now"])
    task = asyncio.create_task(loop.run())
    await asyncio.sleep(0)  # the loop is asleep on its hour
    interval_ms["now"] = 5
    loop.poke()
    await wait_until(lambda: len(runs) >= 3)
    await stopped(task)


async def test_poke_with_a_longer_interval_postpones_the_next_run() -> None:
    """A poke after the interval grew re-plans the sleep: the run due soon does not come."""
    interval_ms = {"now": 50}
    runs: list[int] = []

    async def scan() -> None:
        runs.append(1)

    loop = PeriodicLoop("scan", scan, lambda: interval_ms["now"], run_now=True)
    task = asyncio.create_task(loop.run())
    await wait_until(lambda: runs == [1])
    interval_ms["now"] = 3_600_000
    loop.poke()
    await asyncio.wait({task}, timeout=0.2)  # four of the old intervals
    assert runs == [1]
    await stopped(task)


async def test_lost_redis_is_logged_once_backed_off_and_reported() -> None:
    """Connection errors mark Redis unreachable, log one warning with the delay, back off, and a
    success afterwards marks it reachable again."""
    health = Health()
    health.redis_reachable = True
    attempts: list[float] = []

    async def beat() -> None:
        attempts.append(time.monotonic())
        if len(attempts) <= 4:
            raise RedisConnectionError("Connection refused")

    loop = PeriodicLoop("heartbeat", beat, lambda: 10, health=health)
    with capture_logs() as logs:
        task = asyncio.create_task(loop.run())
        await wait_until(lambda: len(attempts) == 2)
        assert not health.redis_reachable
        await wait_until(lambda: len(attempts) >= 5 and loop.failures == 0)
        await stopped(task)
    assert health.redis_reachable
    down = [e for e in logs if e["event"] == "periodic.redis_down"]
    assert down == [
        {
            "event": "periodic.redis_down",
            "job": "heartbeat",
            "error": "Connection refused",
            "retry_in_s": pytest.approx(0.02),
            "log_level": "warning",
        }
    ]
    assert {"event": "periodic.redis_back", "job": "heartbeat", "failures": 4, "log_level": "info"} in logs
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps[3] >= 0.16 * 0.95  # the fourth retry waited 10 ms doubled four times


async def test_redis_error_reply_leaves_reachability_alone() -> None:
    """A Redis error reply (Redis answered) is logged but does not mark Redis unreachable."""
    health = Health()
    health.redis_reachable = True
    runs: list[int] = []

    async def job() -> None:
        runs.append(1)
        raise ResponseError("READONLY You can't write against a read only replica.")

    with capture_logs() as logs:
        task = asyncio.create_task(PeriodicLoop("adoption", job, lambda: 5, health=health).run())
        await wait_until(lambda: len(runs) >= 2)
        await stopped(task)
    assert health.redis_reachable
    assert any(e["event"] == "periodic.redis_error" and e["job"] == "adoption" for e in logs)


async def test_failing_job_is_logged_and_keeps_its_interval() -> None:
    """A job that raises is logged as ``periodic.failed`` at error level and runs again."""
    runs: list[int] = []

    async def broken() -> None:
        runs.append(1)
        raise RuntimeError("boom")

    with capture_logs() as logs:
        task = asyncio.create_task(PeriodicLoop("broken", broken, lambda: 5).run())
        await wait_until(lambda: len(runs) >= 3)
        await stopped(task)
    failures = [e for e in logs if e["event"] == "periodic.failed"]
    assert len(failures) >= 3
    assert failures[0]["job"] == "broken"
    assert failures[0]["log_level"] == "error"


async def test_cancellation_reaches_a_run_in_flight() -> None:
    """Cancelling the loop's task cancels the run in flight; the CancelledError is not swallowed."""
    started = asyncio.Event()
    outcome: list[str] = []

    async def stuck() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise

    task = asyncio.create_task(PeriodicLoop("stuck", stuck, lambda: 60_000, run_now=True).run())
    await asyncio.wait_for(started.wait(), timeout=5)
    await stopped(task)
    assert outcome == ["cancelled"]


async def test_loops_end_with_their_task_group() -> None:
    """Loops owned by a task group end when the group's tasks are cancelled; the group exits."""
    runs = {"a": 0, "b": 0}

    async def a() -> None:
        runs["a"] += 1

    async def b() -> None:
        runs["b"] += 1

    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(PeriodicLoop(f.__name__, f, lambda: 5).run()) for f in (a, b)]
        await wait_until(lambda: min(runs.values()) >= 2)
        for task in tasks:
            task.cancel()
    assert all(task.cancelled() for task in tasks)


async def test_a_cancel_a_job_swallowed_still_ends_the_loop() -> None:
    """A job that catches the cancel and returns (as a library may) does not keep its loop alive."""
    started = asyncio.Event()

    async def swallowing() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return

    task = asyncio.create_task(PeriodicLoop("beat", swallowing, lambda: 1, run_now=True).run())
    await asyncio.wait_for(started.wait(), timeout=5)
    task.cancel()
    await asyncio.wait({task}, timeout=5)
    assert task.cancelled()
