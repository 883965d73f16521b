"""``python -m bench.webhooks [--burst N ...] [--soak SECONDS --rate R]``: real webhooks, real daemon.

The main benchmark uses a no-op processor; this one sends every occurrence as a webhook
to a loopback receiver in its own process (plain asyncio on uvloop, HTTP/1.1 keep-alive,
answering at once) that records, per request, its ``Idempotency-Key`` and how late it
arrived (arrival minus the body's ``due_at_ms``). One ``reminderd run`` at the defaults
(concurrency 1000), one private redis-server.

- burst: N webhooks due at one instant; time until the last arrived, duplicates, failures
  (``reminder.failed`` / ``reminder.dead_lettered`` in the daemon's log), daemon CPU per call
  (counted from just before the due instant).
- soak: R webhooks a second coming due for SECONDS (scheduled ahead through the API); per
  minute: lateness p50/p99/max, arrivals, the daemon's CPU and RSS; then delivered,
  duplicates, failures and RSS growth over the first minute, and the table as Markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, ClassVar

import redis.asyncio as aioredis
import uvloop
import yaml

from bench.loopback import RequestSplitter
from reminderd.api import AsyncReminders, When
from reminderd.config import load_config
from tests.redis_server import RedisServer


class _Receiver(RequestSplitter):
    """Answers every POST with 200 at once; records (idempotency key, lateness ms) per request."""

    seen: ClassVar[list[tuple[str, int]]] = []

    def on_request(self, body: bytes) -> None:
        occ = json.loads(body)
        _Receiver.seen.append((occ["idempotency_key"], int(time.time() * 1000) - int(occ["due_at_ms"])))
        self.answer()


def _serve(sock: socket.socket, pipe: Connection) -> None:
    """The receiver process: serve, and answer each ``pipe`` poll with what arrived since the last."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        await loop.create_server(_Receiver, sock=sock, backlog=8192)
        while True:
            await loop.run_in_executor(None, pipe.poll, None)
            pipe.recv()
            fresh, _Receiver.seen = _Receiver.seen, []
            pipe.send(fresh)

    uvloop.run(main())


class Receiver:
    """The receiver process and what it has reported so far."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=8192)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self._pipe, child = multiprocessing.Pipe()
        self.proc = multiprocessing.get_context("fork").Process(target=_serve, args=(self.sock, child))
        self.keys: Counter[str] = Counter()
        self.lateness_ms: list[int] = []

    def start(self) -> Receiver:
        self.proc.start()
        return self

    def collect(self) -> list[int]:
        """Take in what arrived since the last call; the lateness of those arrivals."""
        self._pipe.send(None)
        fresh: list[tuple[str, int]] = self._pipe.recv()
        self.keys.update(k for k, _ in fresh)
        late = [ms for _, ms in fresh]
        self.lateness_ms += late
        return late

    def close(self) -> None:
        self.proc.terminate()
        self.proc.join()
        self.sock.close()


class Daemon:
    """One ``reminderd run`` on ``url``, posting to ``hook``, its log in a file."""

    def __init__(self, url: str, hook: str, per_host: int | None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
        self.config = self.dir / "cfg.yaml"
        cfg = {
            "redis": {"url": url},
            "logging": {"level": "warning", "format": "json"},
            "processors": {"hook": {"type": "webhook", "url": hook}},
            "rules": {"send_message": {"processors": ["hook"]}},
            "daemon": {"http_connections_per_host": per_host, "heartbeat_interval": "1s"},
        }
        self.config.write_text(yaml.safe_dump(cfg))
        self.log = self.dir / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Daemon:
        with self.log.open("wb") as out:
            cmd = [sys.executable, "-m", "reminderd", "run", "--config", str(self.config)]
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        return self

    def cpu_s(self) -> float:
        """User plus system CPU seconds so far."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        """Resident set size in MB."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def failures(self) -> int:
        """``reminder.failed`` and ``reminder.dead_lettered`` lines logged."""
        events = [json.loads(line).get("event") for line in self.log.read_text().splitlines() if line]
        return sum(e in ("reminder.failed", "reminder.dead_lettered") for e in events)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(30)


async def _ready(api: AsyncReminders, receiver: Receiver) -> None:
    """One reminder through the whole path, so the daemon is serving before measuring."""
    await api.schedule("send_message-0-warmup", when=When(in_=0))
    deadline = time.monotonic() + 60
    while not receiver.keys and time.monotonic() < deadline:
        receiver.collect()
        await asyncio.sleep(0.1)
    receiver.keys.clear()
    receiver.lateness_ms.clear()


async def _beat_gaps_ms(client: aioredis.Redis, daemons_key: str, stop: asyncio.Event) -> int:
    """The longest gap between two heartbeats (their own Redis times) until ``stop``, in ms."""
    beats: set[int] = set()
    while not stop.is_set():
        beats.update(int(score) for _, score in await client.zrange(daemons_key, 0, -1, withscores=True))
        await asyncio.sleep(0.05)
    ordered = sorted(beats)
    return max((b - a for a, b in itertools.pairwise(ordered)), default=0)


def _pct(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0


async def burst(
    client: aioredis.Redis, api: AsyncReminders, receiver: Receiver, daemon: Daemon, n: int
) -> dict[str, Any]:
    """N due at one instant (3 s from now, time enough to schedule them)."""
    sec = (await client.time())[0]
    due_ms = (int(sec) + 3) * 1000
    at = datetime.fromtimestamp(due_ms / 1000, UTC)
    await api.schedule_many((f"send_message-{i}-burst{n}", None, When(at=at)) for i in range(n))
    while (await client.time())[0] * 1000 < due_ms - 100:
        await asyncio.sleep(0.02)
    cpu0 = daemon.cpu_s()  # from just before the due instant: scheduling's own events are not the calls'
    stop = asyncio.Event()
    beats = asyncio.create_task(_beat_gaps_ms(client, api.store.names.daemons, stop))
    deadline = time.monotonic() + 120
    while len(receiver.keys) < n and time.monotonic() < deadline:
        receiver.collect()
        await asyncio.sleep(0.05)
    cpu = daemon.cpu_s() - cpu0
    await asyncio.sleep(1.0)  # late duplicates, if any
    receiver.collect()
    stop.set()
    row = {
        "n": n,
        "delivered": len(receiver.keys),
        "last_after_due_ms": max(receiver.lateness_ms, default=0),
        "p50_ms": _pct(receiver.lateness_ms, 0.5),
        "duplicates": sum(c - 1 for c in receiver.keys.values()),
        "failures": daemon.failures(),
        "cpu_us_per_call": round(cpu / max(1, n) * 1e6),
        "longest_heartbeat_gap_ms": await beats,
    }
    receiver.keys.clear()
    receiver.lateness_ms.clear()
    return row


async def soak(
    client: aioredis.Redis, api: AsyncReminders, receiver: Receiver, daemon: Daemon, rate: int, seconds: int
) -> list[dict[str, Any]]:
    """``rate`` a second coming due for ``seconds``, scheduled ahead; one row per minute (the last
    may be shorter), then a summary row."""
    sec = (await client.time())[0]
    total = rate * seconds
    start_ms = (int(sec) + 10 + total // 20_000) * 1000  # scheduling 300,000 takes a while
    step = 10_000
    for first in range(0, total, step):
        batch = range(first, min(total, first + step))
        await api.schedule_many(
            (
                f"send_message-{i}-soak",
                None,
                When(at=datetime.fromtimestamp((start_ms + i * 1000 // rate) / 1000, UTC)),
            )
            for i in batch
        )
    while (await client.time())[0] * 1000 < start_ms:
        await asyncio.sleep(0.1)
    receiver.collect()
    rows: list[dict[str, Any]] = []
    for minute, begin in enumerate(range(0, seconds, 60), start=1):
        span = min(60, seconds - begin)
        cpu0, late = daemon.cpu_s(), []
        end = time.monotonic() + span
        while time.monotonic() < end:
            await asyncio.sleep(1)
            late += receiver.collect()
        rows.append({
            "minute": minute, "arrived": len(late), "p50_ms": _pct(late, 0.5), "p99_ms": _pct(late, 0.99),
            "max_ms": max(late, default=0), "cpu_per_s": round((daemon.cpu_s() - cpu0) / span, 3),
            "rss_mb": round(daemon.rss_mb(), 1),
        })  # fmt: skip
        print(f"[soak] {rows[-1]}", flush=True)
    await asyncio.sleep(5)
    receiver.collect()
    first_rss = rows[0]["rss_mb"] if rows else 0.0
    growth = round((max(r["rss_mb"] for r in rows) / first_rss - 1) * 100, 1) if first_rss else 0.0
    rows.append({
        "delivered": len(receiver.keys), "of": total, "rss_growth_pct": growth,
        "duplicates": sum(c - 1 for c in receiver.keys.values()), "failures": daemon.failures(),
    })  # fmt: skip
    return rows


def soak_table(rows: list[dict[str, Any]]) -> str:
    """The soak's minutes as the Markdown table of ``docs/benchmark.md``, then its summary line."""
    lines = [
        "| minute | arrived | lateness p50 | p99 | max | daemon CPU s/s | RSS |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows[:-1]:
        lines.append(
            f"| {r['minute']} | {r['arrived']:,} | {r['p50_ms']} ms | {r['p99_ms']} ms | {r['max_ms']} ms "
            f"| {r['cpu_per_s']} | {r['rss_mb']} MB |"
        )
    s = rows[-1]
    lines.append(
        f"\n{s['delivered']:,} of {s['of']:,} delivered, {s['duplicates']} duplicates, "
        f"{s['failures']} failures, RSS +{s['rss_growth_pct']} % after the first minute."
    )
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    server = RedisServer().start()
    receiver = Receiver().start()
    daemon = Daemon(server.url, receiver.url, args.per_host).start()
    client = aioredis.Redis.from_url(server.url, decode_responses=True)
    api = AsyncReminders(client, load_config(str(daemon.config)))
    try:
        await _ready(api, receiver)
        soak_s = args.soak or args.soak_minutes * 60
        for n in args.burst or ([] if soak_s else [1000, 10_000]):
            print(f"[burst] {await burst(client, api, receiver, daemon, n)}", flush=True)
        if soak_s:
            rows = await soak(client, api, receiver, daemon, args.rate, soak_s)
            print(f"[soak] {rows[-1]}", flush=True)
            print(soak_table(rows), flush=True)
    finally:
        await client.aclose()
        daemon.stop()
        receiver.close()
        server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.webhooks")
    parser.add_argument("--burst", type=int, action="append", help="webhooks due at one instant (repeatable)")
    parser.add_argument("--soak", type=int, default=0, help="soak seconds (600: the 10 minute soak)")
    parser.add_argument("--soak-minutes", type=int, default=0, help="the same in minutes")
    parser.add_argument("--rate", type=int, default=500, help="webhooks a second during the soak")
    parser.add_argument("--per-host", type=int, help="daemon.http_connections_per_host")
    uvloop.run(main(parser.parse_args()))
