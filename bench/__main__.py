"""``python -m bench [--quick] [--only SYSTEM ...] [--scenario NAME ...]``.

Runs every selected system through every selected scenario, each pair on its own fresh
private redis-server, prints the table and the targets, and writes the results
(``bench/results/latest.*`` for a full run, ``quick.*`` or ``partial.*`` otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime

import redis.asyncio as aioredis

from bench.bullmq_sys import BullMQSystem, missing_tools
from bench.machine import machine_facts
from bench.model import Result
from bench.naive import NaiveSystem
from bench.poller import PollerSystem
from bench.reminderd_sys import ReminderdSystem
from bench.report import RESULTS, load_results, logging_cost, table, targets_md, write_results
from bench.scenarios import CLASSIC, RAW, RUNNERS, Scenario, full_scenarios, quick_scenarios
from bench.system import System
from bench.targets import judge
from tests.redis_server import RedisServer

Factory = Callable[[str], System]
SYSTEMS: dict[str, Factory] = {
    "reminderd-1": lambda url: ReminderdSystem(url, daemons=1),
    "reminderd-2": lambda url: ReminderdSystem(url, daemons=2),
    "reminderd-3": lambda url: ReminderdSystem(url, daemons=3),
    "naive-sub": NaiveSystem,
    "bare-poller": PollerSystem,
    "bullmq": BullMQSystem,
    "reminderd-1-info": lambda url: ReminderdSystem(url, daemons=1, log_level="info"),
}
# Systems that run only some scenarios unless asked for by --only: the poller has no raw
# path, the naive subscriber no API path (its "API" bursts are raw keys too).
LIMITED = {
    "reminderd-1-info": {"burst20k"},
    "reminderd-2": CLASSIC,
    "reminderd-3": {"burst100k"},
    "bare-poller": CLASSIC,
    "bullmq": CLASSIC,
    "naive-sub": CLASSIC | RAW,
}


async def run_one(name: str, factory: Factory, sc: Scenario) -> Result:
    """One system through one scenario on a fresh redis-server."""
    server = RedisServer(*(["--enable-debug-command", "local"] if sc.lazy_expiry else [])).start()
    client = aioredis.Redis.from_url(server.url, decode_responses=True)
    system = factory(server.url)
    try:
        return await RUNNERS[sc.kind](system, client, sc)
    except Exception as exc:
        res = Result(name, sc.name, sc.n, notes=[f"error: {type(exc).__name__}: {exc}"])
        traceback.print_exc()
        return res
    finally:
        await system.close()
        await client.aclose()
        server.close()


def plan(args: argparse.Namespace) -> list[tuple[str, Scenario]]:
    """(system, scenario) pairs in run order."""
    scenarios = quick_scenarios() if args.quick else full_scenarios()
    if args.scenario:
        unknown = set(args.scenario) - {s.name for s in scenarios}
        if unknown:
            raise SystemExit(f"unknown scenario(s): {', '.join(sorted(unknown))}")
        scenarios = [s for s in scenarios if s.name in args.scenario]
    systems = args.only or list(SYSTEMS)
    skipped = missing_tools()
    if skipped and "bullmq" in systems:
        print(f"[bench] bullmq {skipped}", file=sys.stderr)
        systems = [s for s in systems if s != "bullmq"]
    pairs = []
    for sc in scenarios:
        for name in systems:
            if not args.only and name in LIMITED and sc.name not in LIMITED[name]:
                continue
            pairs.append((name, sc))
    return pairs


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small N and a 5 s steady phase (smoke run)")
    p.add_argument(
        "--only",
        action="append",
        choices=list(SYSTEMS),
        metavar="SYSTEM",
        help=f"run only this system (repeatable): {', '.join(SYSTEMS)}",
    )
    p.add_argument(
        "--scenario",
        action="append",
        metavar="NAME",
        help="run only this scenario (repeatable): " + ", ".join(s.name for s in full_scenarios()),
    )
    p.add_argument("--render", metavar="STEM", help="re-render bench/results/STEM.json (no run)")
    return p.parse_args(argv)


async def main_async(args: argparse.Namespace) -> int:
    """Run the plan, print and write the results."""
    started = time.monotonic()
    load_before = os.getloadavg()
    results = []
    for name, sc in plan(args):
        print(f"[bench] {name} / {sc.name} ...", file=sys.stderr, flush=True)
        res = await run_one(name, SYSTEMS[name], sc)
        print(f"[bench]   {res.as_json()}", file=sys.stderr, flush=True)
        results.append(res)
    verdicts = judge(results)
    mode = "quick" if args.quick else ("partial" if args.only or args.scenario else "full")
    meta = {
        "mode": mode,
        "finished": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "duration_s": round(time.monotonic() - started, 1),
        "machine": machine_facts(),
        "loadavg_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
    }
    print(table(results))
    print()
    print(targets_md(verdicts))
    print(logging_cost(results))
    write_results(results, meta, verdicts, stem="latest" if mode == "full" else mode)
    return 0


def render(stem: str) -> int:
    """Judge and write an earlier run's results again (after a change to the report)."""
    results, meta = load_results(RESULTS / f"{stem}.json")
    verdicts = judge(results)
    print(table(results))
    print(targets_md(verdicts))
    write_results(results, meta, verdicts, stem=stem)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    if args.render:
        return render(args.render)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
