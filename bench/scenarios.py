"""The scenarios: a burst due at one instant, a steady rate, recovery after downtime.

Each takes a fresh system on a fresh Redis and returns one ``Result``. Due instants are
chosen far enough ahead that scheduling finishes first (a run where it did not says so
in its notes), and every wait polls a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from bench.model import Result, score
from bench.system import Item, System, now_ms, redis_cpu_s, used_memory

ASSUMED_RATE = 10_000  # reminders/s: sets how far ahead a burst is due
STEADY_LEAD_MS = 1000  # the steady producer schedules each reminder this far ahead
STEADY_TICK_S = 0.02


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named scenario with its size; ``kind`` picks the function below."""

    name: str
    kind: str  # burst | steady | recovery
    n: int
    rate: int = 0  # steady only: reminders per second
    seconds: float = 0.0  # steady only
    raw: bool = False  # burst only: producers write raw keys (``SET … PXAT``), not the API
    background: int = 0  # burst only: raw keys due in a day, written before the burst
    lazy_expiry: bool = False  # burst only: Redis's active expiry off (``DEBUG SET-ACTIVE-EXPIRE 0``)


def make_items(n: int, due_of: list[int] | int) -> list[Item]:
    """Keys of the default rule, one user each; one due instant or one per item."""
    dues = [due_of] * n if isinstance(due_of, int) else due_of
    return [(f"send_message-u{i}-bench", dues[i]) for i in range(n)]


async def timed_schedule(
    system: System, client: aioredis.Redis, items: list[Item], res: Result, *, raw: bool = False
) -> None:
    """Schedule and record the time taken and the memory added per reminder."""
    before = await used_memory(client)
    started = time.perf_counter()
    await system.schedule(items, raw=raw)
    res.schedule_s = time.perf_counter() - started
    res.bytes_per_reminder = (await used_memory(client) - before) / len(items)


class CpuMeter:
    """CPU the system's processes and its Redis spend from ``start`` on (samples while they run)."""

    def __init__(self, system: System, client: aioredis.Redis) -> None:
        self.system, self.client = system, client
        self.worker0 = self.redis0 = 0.0

    async def start(self) -> CpuMeter:
        self.worker0, self.redis0 = self.system.cpu_s(), await redis_cpu_s(self.client)
        return self

    async def record(self, res: Result) -> None:
        """Write the CPU used since ``start`` into ``res``."""
        res.worker_cpu_s = self.system.cpu_s() - self.worker0
        res.redis_cpu_s = await redis_cpu_s(self.client) - self.redis0


async def wait_done(system: System, res: Result, deadline_ms: float) -> float | None:
    """Poll ``done`` until the wall-clock deadline; the wall ms when it became true."""
    while now_ms() < deadline_ms:
        system.cpu_s()  # a worker that exits by itself keeps the figure it had when last seen
        if await system.done():
            return now_ms() if system.reports_settle else None
        await asyncio.sleep(0.01)
    res.notes.append(f"not done after waiting {system.patience_s:g} s")
    return None


async def write_background(system: System, client: aioredis.Redis, sc: Scenario) -> None:
    """``sc.background`` reminders due in a day (raw keys in a raw scenario), as a million users look."""
    if sc.lazy_expiry:
        await client.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0")  # type: ignore[no-untyped-call]
    if not sc.background:
        return
    day_ms = int(now_ms()) + 86_400_000
    items = [(f"send_message-bg{i}-daily", day_ms + i) for i in range(sc.background)]
    await system.schedule(items, raw=sc.raw)


async def burst(system: System, client: aioredis.Redis, sc: Scenario) -> Result:
    """N reminders all due at one instant, the system already running."""
    res = Result(system.name, sc.name, sc.n)
    await system.start(sc.n)
    await write_background(system, client, sc)
    due = int(now_ms() + 1500 + sc.n * 1000 / ASSUMED_RATE)
    items = make_items(sc.n, due)
    meter = await CpuMeter(system, client).start()
    await timed_schedule(system, client, items, res, raw=sc.raw)
    if now_ms() > due:
        res.notes.append("scheduling overran the due instant")
    settled = await wait_done(system, res, due + system.patience_s * 1000)
    await meter.record(res)
    fires = await system.stop()
    first = score(res, dict.fromkeys((k for k, _ in items), float(due)), fires)
    if first:
        res.drain_s = (max(first.values()) - due) / 1000
    res.settle_s = None if settled is None else (settled - due) / 1000
    return res


async def steady(system: System, client: aioredis.Redis, sc: Scenario) -> Result:
    """``rate``/s coming due for ``seconds``, scheduled live ``STEADY_LEAD_MS`` ahead."""
    n = int(sc.rate * sc.seconds)
    res = Result(system.name, sc.name, n)
    await system.start(n)
    t0 = int(now_ms() + STEADY_LEAD_MS + 500)
    items = make_items(n, [t0 + (i * 1000) // sc.rate for i in range(n)])
    meter = await CpuMeter(system, client).start()
    res.schedule_s = await produce(system, items)
    settled = await wait_done(system, res, items[-1][1] + system.patience_s * 1000)
    await meter.record(res)
    fires = await system.stop()
    first = score(res, {k: float(d) for k, d in items}, fires)
    if first:
        res.drain_s = (max(first.values()) - items[-1][1]) / 1000
    res.settle_s = None if settled is None else (settled - items[-1][1]) / 1000
    return res


async def produce(system: System, items: list[Item]) -> float:
    """Schedule each item once its due time is within the lead; total time spent scheduling."""
    sent, spent_s = 0, 0.0
    while sent < len(items):
        horizon = now_ms() + STEADY_LEAD_MS
        end = sent
        while end < len(items) and items[end][1] <= horizon:
            end += 1
        if end > sent:
            started = time.perf_counter()
            await system.schedule(items[sent:end])
            spent_s += time.perf_counter() - started
            sent = end
        await asyncio.sleep(STEADY_TICK_S)  # pacing the producer, not waiting for a result
    return spent_s


async def recovery(system: System, client: aioredis.Redis, sc: Scenario) -> Result:
    """N reminders come due while nothing runs; time from process start to the last fire."""
    res = Result(system.name, sc.name, sc.n)
    due = int(now_ms() + 1500 + sc.n * 1000 / ASSUMED_RATE)
    items = make_items(sc.n, due)
    await timed_schedule(system, client, items, res)
    while now_ms() < due + 1000:
        await asyncio.sleep(0.05)  # downtime: every reminder is now overdue
    started = now_ms()
    meter = await CpuMeter(system, client).start()
    await system.start(sc.n, wait_ready=False)
    settled = await wait_done(system, res, started + system.patience_s * 1000)
    await meter.record(res)
    fires = await system.stop()
    first = score(res, dict.fromkeys((k for k, _ in items), float(due)), fires)
    if first:
        res.drain_s = (max(first.values()) - started) / 1000
    res.settle_s = None if settled is None else (settled - started) / 1000
    return res


RUNNERS = {"burst": burst, "steady": steady, "recovery": recovery}


def full_scenarios() -> list[Scenario]:
    """The issue's scenarios."""
    return [
        Scenario("burst20k", "burst", 20_000),
        Scenario("burst100k", "burst", 100_000),
        Scenario("steady", "steady", 0, rate=1000, seconds=60),
        Scenario("recovery", "recovery", 100_000),
        *raw_scenarios(20_000, 100_000, 1_000_000),
    ]


def quick_scenarios() -> list[Scenario]:
    """A smoke run: small N, a short steady phase."""
    return [
        Scenario("burst20k", "burst", 2_000),
        Scenario("burst100k", "burst", 5_000),
        Scenario("steady", "steady", 0, rate=1000, seconds=5),
        Scenario("recovery", "recovery", 5_000),
        *raw_scenarios(2_000, 5_000, 50_000),
    ]


def raw_scenarios(small: int, large: int, background: int) -> list[Scenario]:
    """Raw ``SET … PXAT`` bursts: alone, among background raw keys, and with lazy expiry only."""
    return [
        Scenario("raw20k", "burst", small, raw=True),
        Scenario("raw100k", "burst", large, raw=True),
        Scenario("raw20k+1M", "burst", small, raw=True, background=background),
        Scenario("api20k+1M", "burst", small, background=background),
        Scenario("raw20k-lazy", "burst", small, raw=True, lazy_expiry=True),
    ]


# The scenarios a system that has only one way in runs (unless asked for by --only).
CLASSIC = {"burst20k", "burst100k", "steady", "recovery"}
RAW = {"raw20k", "raw100k", "raw20k+1M", "raw20k-lazy"}
