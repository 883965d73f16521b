"""``python -m bench.cluster [--n 20000] [--daemons 2] [--primaries 1 3]``: a burst on Redis
Cluster, on clusters of different sizes, in one run.

Each row is a fresh cluster (``tests.cluster_topology``: N primaries, one replica each, on
loopback) with ``--daemons`` reminderd daemons (16 shards, the no-op processor), and one
burst of ``--n`` reminders all due at one instant, scheduled through the API (``api``) or
written as raw ``SET … PXAT`` keys by a cluster-aware producer (``raw``). Redis CPU is summed
over the primaries. On one machine every node and daemon shares the same cores, so a larger
cluster shows what sharding costs and where it stops being the bottleneck, not the speed-up
of separate hosts.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from bench.model import Result, score
from bench.reminderd_sys import ReminderdSystem
from bench.report import table
from bench.scenarios import ASSUMED_RATE, make_items
from bench.system import now_ms
from tests.cluster_topology import ClusterTopology

SHARDS = 16


class ClusterReminderd(ReminderdSystem):
    """reminderd daemons on a cluster: the sharded store, its counters summed over the shards."""

    def __init__(self, url: str, *, daemons: int, primaries: int) -> None:
        super().__init__(url, daemons=daemons)
        self.name = f"reminderd-{daemons} / {primaries} primar{'y' if primaries == 1 else 'ies'}"

    def _config(self, log_level: str) -> dict[str, Any]:
        config = super()._config(log_level)
        config["redis"] = {"url": self.url, "shards": SHARDS}
        return config

    async def done(self) -> bool:
        """As many fired as expected, by the counters of every shard."""
        return (await self.api.store.stats()).get("fired", 0) >= self.expect


def primaries_cpu_s(topology: ClusterTopology) -> float:
    """CPU seconds of every primary's server so far (``INFO cpu``)."""
    total = 0.0
    for node in topology.primaries():
        info = node.info("cpu")
        total += float(str(info["used_cpu_user"])) + float(str(info["used_cpu_sys"]))
    return total


async def burst(primaries: int, daemons: int, n: int, *, raw: bool) -> Result:
    """One burst of ``n`` on a fresh cluster of ``primaries``."""
    topology = ClusterTopology(primaries).start()
    url = "redis+cluster://" + ",".join(topology.nodes)
    system = ClusterReminderd(url, daemons=daemons, primaries=primaries)
    res = Result(system.name, f"{'raw' if raw else 'api'}{n // 1000}k", n)
    try:
        await system.start(n)
        due = int(now_ms() + 1500 + n * 1000 / ASSUMED_RATE)
        items = make_items(n, due)
        cpu0, redis0 = system.cpu_s(), primaries_cpu_s(topology)
        started = time.perf_counter()
        await system.schedule(items, raw=raw)
        res.schedule_s = time.perf_counter() - started
        if now_ms() > due:
            res.notes.append("scheduling overran the due instant")
        deadline = due + system.patience_s * 1000
        while now_ms() < deadline and not await system.done():
            system.cpu_s()
            await asyncio.sleep(0.01)
        settled = now_ms()
        res.worker_cpu_s = system.cpu_s() - cpu0
        res.redis_cpu_s = primaries_cpu_s(topology) - redis0
        fires = await system.stop()
        first = score(res, dict.fromkeys((k for k, _ in items), float(due)), fires)
        if first:
            res.drain_s = (max(first.values()) - due) / 1000
        res.settle_s = (settled - due) / 1000
        return res
    finally:
        await system.close()
        topology.close()


async def main(args: argparse.Namespace) -> None:
    """Every cluster size, the API burst then the raw one; the table at the end."""
    results = []
    for primaries in args.primaries:
        for raw in (False, True):
            res = await burst(primaries, args.daemons, args.n, raw=raw)
            print(
                f"{res.system} {res.scenario}: drain {res.drain_s}s, lost {res.lost}, dup {res.dup}",
                flush=True,
            )
            results.append(res)
    print(table(results))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="reminders in each burst")
    parser.add_argument("--daemons", type=int, default=2)
    parser.add_argument("--primaries", type=int, nargs="+", default=[1, 3])
    asyncio.run(main(parser.parse_args()))
