"""BullMQ's delayed jobs, the peer most users would pick: a Node worker and producer.

BullMQ is installed by package name from the npm registry (with ioredis, its Redis client)
into a cache directory the first time it is needed (``~/.cache/reminderd-bench/bullmq-<version>``),
never into the repository. Where ``node`` or ``npm`` is missing the system is skipped with a note. The
worker runs concurrency 100 with a no-op handler that records each job like every other
system; the producer adds delayed jobs with ``Queue.addBulk`` in chunks of 1000.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from bench.system import ROOT, Item, WorkerSystem, wait_file

VERSION = "6.7.0"
IOREDIS = "6.0.0"  # BullMQ 6 takes its Redis client as an optional peer dependency
SCRIPTS = ROOT / "bench" / "bullmq"


def cache_dir() -> Path:
    """Where BullMQ's node_modules live between runs."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "reminderd-bench" / f"bullmq-{VERSION}"


def missing_tools() -> str | None:
    """Why BullMQ cannot run here, or None."""
    absent = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    return f"skipped: {' and '.join(absent)} not found on PATH" if absent else None


def installed_modules() -> Path:
    """The node_modules directory holding BullMQ, installed from the npm registry if absent."""
    prefix = cache_dir()
    modules = prefix / "node_modules"
    if not (modules / "ioredis" / "package.json").exists():
        prefix.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "npm",
                "install",
                "--prefix",
                str(prefix),
                "--no-audit",
                "--no-fund",
                f"bullmq@{VERSION}",
                f"ioredis@{IOREDIS}",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return modules


class BullMQSystem(WorkerSystem):
    """One BullMQ worker process; a long-lived producer process schedules on request."""

    name = "bullmq"
    patience_s = 120.0
    reports_settle = False  # done = the worker exited after its last job

    def __init__(self, url: str) -> None:
        self.modules = installed_modules()
        super().__init__(url)
        self.producer: asyncio.subprocess.Process | None = None

    async def start(self, expect: int, *, wait_ready: bool = True) -> None:
        """Spawn the worker (and the producer once); ready once the worker's queue is connected."""
        worker = [str(SCRIPTS / "worker.js"), str(self.modules), self.url, str(expect), str(self.out)]
        self.group.spawn(worker, "worker.log", program="node")
        await self._producer()
        if wait_ready and not await wait_file(self.out.with_suffix(".ready"), 30):
            raise RuntimeError(f"{self.name} did not start:\n{self.group.log_tail()}")

    async def _producer(self) -> asyncio.subprocess.Process:
        if self.producer is None:
            self.producer = await asyncio.create_subprocess_exec(
                "node", str(SCRIPTS / "producer.js"), str(self.modules), self.url,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            assert self.producer.stdout is not None
            if (await self.producer.stdout.readline()).strip() != b"ready":
                raise RuntimeError("the BullMQ producer did not start")
        return self.producer

    async def schedule(self, items: Sequence[Item], *, raw: bool = False) -> None:
        """Delayed jobs through ``Queue.addBulk``; BullMQ has no raw-key path."""
        if raw:
            raise ValueError("BullMQ has no raw-key path")
        batch = self.group.dir / "batch.json"
        batch.write_text(json.dumps(list(items)))
        producer = await self._producer()
        assert producer.stdin is not None
        assert producer.stdout is not None
        producer.stdin.write(f"{batch}\n".encode())
        await producer.stdin.drain()
        if (await producer.stdout.readline()).strip() != b"ok":
            raise RuntimeError("the BullMQ producer failed")

    async def done(self) -> bool:
        """The worker exits once it has run every job."""
        return self.group.all_exited()

    async def close(self) -> None:
        """Stop the producer, then what the worker system owns."""
        if self.producer is not None and self.producer.returncode is None:
            assert self.producer.stdin is not None
            self.producer.stdin.close()
            try:
                await asyncio.wait_for(self.producer.wait(), 10)
            except TimeoutError:
                self.producer.kill()
                await self.producer.wait()
        await super().close()
