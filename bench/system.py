"""What every benchmarked system provides, and the process plumbing they share."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import redis.asyncio as aioredis

from bench.model import Fire, read_fires

ROOT = Path(__file__).resolve().parents[1]
Item = tuple[str, int]  # (trigger key, due epoch ms)


class System(Protocol):
    """One system under test, bound to one private redis-server."""

    name: str
    patience_s: float  # how long to wait for the last fire before counting the rest lost
    reports_settle: bool  # whether ``done`` says "all work written" (else settle is not reported)

    async def start(self, expect: int, *, wait_ready: bool = True) -> None:
        """Start its processes; ``expect`` is how many fires make it done."""

    async def schedule(self, items: Sequence[Item], *, raw: bool = False) -> None:
        """Schedule reminders the way this system's producers would (``raw``: ``SET … PXAT``)."""

    async def done(self) -> bool:
        """True once everything scheduled has fired (checked from outside, cheaply)."""

    async def stop(self) -> list[Fire]:
        """Stop its processes and collect every fire they recorded."""

    def cpu_s(self) -> float:
        """CPU seconds its processes used so far (read before ``stop``)."""

    async def close(self) -> None:
        """Release clients and temporary files."""


def now_ms() -> float:
    """Wall clock in epoch milliseconds (the clock every fire is recorded with)."""
    return time.time() * 1000


class ProcessGroup:
    """Child processes of one system with their logs in a private temporary directory."""

    def __init__(self, name: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
        self.procs: list[subprocess.Popen[bytes]] = []
        self.cpu_seen: dict[int, float] = {}

    def spawn(
        self, args: Sequence[str], log_name: str, *, program: str = sys.executable
    ) -> subprocess.Popen[bytes]:
        """Start ``program <args>`` (Python by default) from the repository root, output to a log file."""
        extra = os.environ.get("PYTHONPATH")
        path = str(ROOT) if not extra else f"{ROOT}{os.pathsep}{extra}"
        env = {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}
        env.pop("REMINDERD_REDIS_URL", None)
        with (self.dir / log_name).open("ab") as out:
            proc = subprocess.Popen([program, *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def cpu_s(self) -> float:
        """CPU seconds (user + system) of every child, as last seen alive (sample it while they run)."""
        for p in self.procs:
            if p.poll() is None:
                self.cpu_seen[p.pid] = max(self.cpu_seen.get(p.pid, 0.0), process_cpu_s(p.pid))
        return sum(self.cpu_seen.values())

    def all_exited(self) -> bool:
        """True when every child has ended."""
        return all(p.poll() is not None for p in self.procs)

    def crashed(self) -> list[str]:
        """Descriptions of children that ended with a non-zero code."""
        return [f"pid {p.pid} exited {p.returncode}" for p in self.procs if p.poll() not in (None, 0)]

    async def terminate(self, timeout_s: float = 40.0) -> None:
        """SIGTERM every child, wait for each, SIGKILL what does not end in time."""
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for p in self.procs:
            while p.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if p.poll() is None:
                p.kill()
                p.wait(5)

    def log_tail(self, lines: int = 15) -> str:
        """The end of every child log, for error notes."""
        parts = []
        for path in sorted(self.dir.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"{path.name}:\n" + "\n".join(text))
        return "\n".join(parts)


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process, from ``/proc/<pid>/stat`` (0 where unreadable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def redis_cpu_s(client: aioredis.Redis) -> float:
    """The server's own CPU seconds so far (``INFO cpu``, main thread and children)."""
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


RAW_CHUNK = 1000  # SETs per pipeline round trip


async def write_raw(client: aioredis.Redis, items: Sequence[Item]) -> None:
    """What any producer in any language does: pipelined ``SET key 1 PXAT due``."""
    for i in range(0, len(items), RAW_CHUNK):
        async with client.pipeline(transaction=False) as pipe:
            for key, due in items[i : i + RAW_CHUNK]:
                pipe.set(key, "1", pxat=due)
            await pipe.execute()


async def used_memory(client: aioredis.Redis) -> int:
    """``INFO memory`` used_memory in bytes."""
    info = await client.info("memory")
    return int(info["used_memory"])


async def wait_file(path: Path, timeout_s: float) -> bool:
    """Poll until ``path`` exists (a worker's ready marker)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists():
            return True
        await asyncio.sleep(0.02)
    return False


class WorkerSystem:
    """A baseline run as one worker process (``python -m <module>``) writing ``fires.tsv``.

    Subclasses name the module and say how to schedule and when the work is done.
    """

    name = "worker"
    module = ""

    def __init__(self, url: str) -> None:
        self.url = url
        self.group = ProcessGroup(self.name)
        self.out = self.group.dir / "fires.tsv"
        self.client = aioredis.Redis.from_url(url, decode_responses=True)

    async def start(self, expect: int, *, wait_ready: bool = True) -> None:
        """Spawn the worker; ready once it wrote its ready marker."""
        args = ["-m", self.module, "--url", self.url, "--expect", str(expect), "--out", str(self.out)]
        self.group.spawn(args, f"{self.module.rsplit('.', 1)[-1]}.log")
        if wait_ready and not await wait_file(self.out.with_suffix(".ready"), 20):
            raise RuntimeError(f"{self.name} did not start:\n{self.group.log_tail()}")

    def cpu_s(self) -> float:
        """CPU seconds of the worker process so far."""
        return self.group.cpu_s()

    async def stop(self) -> list[Fire]:
        """SIGTERM (if still running) and read what it recorded."""
        await self.group.terminate()
        return read_fires(self.out)

    async def close(self) -> None:
        """Stop anything still running, close the client and remove the temporary directory."""
        await self.group.terminate()
        await self.client.aclose()
        shutil.rmtree(self.group.dir, ignore_errors=True)
