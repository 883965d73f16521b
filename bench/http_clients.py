"""``python -m bench.http_clients``: which HTTP client holds at the daemon's full concurrency?

N concurrent POSTs (the webhook's shape: a small JSON body, an ``Idempotency-Key``) to a
loopback receiver that answers after 0 ms or 300 ms, each request under the processor's
10 s budget, for each candidate: httpx as the daemon configured it (200 pooled
connections, the pool wait counted in the budget), httpx with a pool as large as the
concurrency, and aiohttp (connection limit per host as large as the concurrency). The
receiver runs in its own process (plain asyncio on uvloop, HTTP/1.1 keep-alive), so its
cost is not the client's. Prints one Markdown table: wall time, calls that timed out or
failed, and the client process's CPU per call.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import httpx
import uvloop

from bench.loopback import RequestSplitter

BODY = b'{"key":"send_message-42-daily","occurrence":1,"payload":{}}'
BUDGET_S = 10.0
Call = Callable[[int], Awaitable[None]]


class _Receiver(RequestSplitter):
    """Answers each request with 200 after ``delay_s``."""

    delay_s = 0.0

    def on_request(self, body: bytes) -> None:
        asyncio.get_running_loop().call_later(self.delay_s, self.answer)


def _serve(sock: socket.socket, delay_s: float) -> None:
    _Receiver.delay_s = delay_s

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Receiver, sock=sock, backlog=8192)
        await server.serve_forever()

    uvloop.run(main())


@dataclass
class Row:
    """One candidate at one size and delay."""

    client: str
    calls: int
    delay_ms: int
    wall_s: float
    timeouts: int
    errors: int
    cpu_us_per_call: float


async def _run(name: str, make: Callable[[str], Awaitable[tuple[Call, Callable[[], Awaitable[None]]]]],
               url: str, n: int, delay_ms: int) -> Row:  # fmt: skip
    call, close = await make(url)
    timeouts = errors = 0
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()

    async def one(i: int) -> None:
        nonlocal timeouts, errors
        try:
            async with asyncio.timeout(BUDGET_S):
                await call(i)
        except TimeoutError:
            timeouts += 1
        except Exception:
            errors += 1

    await asyncio.gather(*(one(i) for i in range(n)))
    wall = time.perf_counter() - started
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    await close()
    return Row(name, n, delay_ms, wall, timeouts, errors, cpu / n * 1e6)


def _httpx(max_connections: int) -> Callable[[str], Awaitable[tuple[Call, Callable[[], Awaitable[None]]]]]:
    async def make(url: str) -> tuple[Call, Callable[[], Awaitable[None]]]:
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        client = httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(BUDGET_S))

        async def call(i: int) -> None:
            r = await client.post(url, content=BODY, headers={"Idempotency-Key": f"k{i}"})
            r.raise_for_status()

        return call, client.aclose

    return make


def _aiohttp(limit: int) -> Callable[[str], Awaitable[tuple[Call, Callable[[], Awaitable[None]]]]]:
    async def make(url: str) -> tuple[Call, Callable[[], Awaitable[None]]]:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit, limit_per_host=limit))

        async def call(i: int) -> None:
            async with session.post(url, data=BODY, headers={"Idempotency-Key": f"k{i}"}) as r:
                r.raise_for_status()
                await r.read()

        return call, session.close

    return make


def main() -> None:
    """Each candidate × size × delay, on a fresh receiver process per delay."""
    p = argparse.ArgumentParser(prog="python -m bench.http_clients")
    p.add_argument("--calls", type=int, action="append", help="concurrent calls (repeatable; 1000 and 5000)")
    args = p.parse_args()
    sizes = args.calls or [1000, 5000]
    rows: list[Row] = []
    given_up: set[tuple[str, int]] = set()  # a family that timed out at a smaller size is not run larger
    for delay_ms in (0, 300):
        sock = socket.create_server(("127.0.0.1", 0), backlog=8192)
        proc = multiprocessing.get_context("fork").Process(target=_serve, args=(sock, delay_ms / 1000))
        proc.start()
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
        try:
            for n in sizes:
                candidates = {
                    ("httpx-200", "httpx, 200 connections (as configured)"): _httpx(200),
                    ("httpx-n", "httpx, a connection per call"): _httpx(n),
                    ("aiohttp-n", "aiohttp, a connection per call"): _aiohttp(n),
                }
                for (family, name), make in candidates.items():
                    if (family, delay_ms) in given_up:
                        print(f"[http] {name} at {n}: not run, it timed out at a smaller size", flush=True)
                        continue
                    rows.append(uvloop.run(_run(name, make, url, n, delay_ms)))
                    print(f"[http] {rows[-1]}", flush=True)
                    if rows[-1].timeouts:
                        given_up.add((family, delay_ms))
        finally:
            proc.terminate()
            proc.join()
            sock.close()
    print("| client | calls | receiver delay | wall s | timed out | failed | client CPU µs/call |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.client} | {r.calls:,} | {r.delay_ms} ms | {r.wall_s:.2f} | {r.timeouts} | {r.errors} "
              f"| {r.cpu_us_per_call:,.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
