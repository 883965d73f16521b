"""reminderd itself: real daemon subprocesses with the no-op processor, API scheduling."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import yaml

from bench.model import Fire, read_fires
from bench.system import Item, ProcessGroup, write_raw
from reminderd.api import AsyncReminders, When
from reminderd.config import load_config
from reminderd.storage.connection import make_client
from reminderd.storage.names import Names

RUN_FALLBACK = (
    "import sys; from reminderd.daemon.lifecycle import run_daemon; sys.exit(run_daemon(sys.argv[1]))"
)


def daemon_args(config: str) -> list[str]:
    """``-m reminderd run --config`` when the CLI exists, else the daemon entry point."""
    if importlib.util.find_spec("reminderd.cli") is not None:
        return ["-m", "reminderd", "run", "--config", config]
    return ["-c", RUN_FALLBACK, config]


class ReminderdSystem:
    """``daemons`` instances of ``reminderd run`` sharing one Redis and one config."""

    patience_s = 120.0
    reports_settle = True

    def __init__(self, url: str, *, daemons: int = 1, log_level: str = "warning") -> None:
        self.name = f"reminderd-{daemons}" + ("" if log_level == "warning" else f"-{log_level}")
        self.url = url
        self.daemons = daemons
        self.group = ProcessGroup(self.name)
        self.config = self.group.dir / "bench.yaml"
        self.config.write_text(yaml.safe_dump(self._config(log_level)))
        self.settings = load_config(str(self.config))
        self.names = Names(self.settings.namespace)
        self.client: aioredis.Redis = make_client(self.settings.redis, url)
        self.api = AsyncReminders(self.client, self.settings)
        self.expect = 0

    def _config(self, log_level: str) -> dict[str, Any]:
        """Defaults everywhere except the processor and logging (per-fire logs off)."""
        return {
            "redis": {"url": self.url},
            "logging": {"level": log_level, "format": "json"},
            "processors": {
                "noop": {"type": "plugin", "path": "bench.noop:Noop", "options": {"dir": str(self.group.dir)}}
            },
            "rules": {"send_message": {"processors": ["noop"]}},
        }

    async def start(self, expect: int, *, wait_ready: bool = True) -> None:
        """Spawn the daemons; ready means every instance has written its heartbeat."""
        self.expect = expect
        profile_dir = os.environ.get("BENCH_PYSPY_DIR")
        for i in range(self.daemons):
            proc = self.group.spawn(daemon_args(str(self.config)), f"daemon-{i}.log")
            if profile_dir:  # sample the daemon with py-spy until it exits
                out = Path(profile_dir) / f"{self.name}-{int(time.time())}-{i}.txt"
                spy = ["record", "--format", "raw", "-r", "250", "-o", str(out), "--pid", str(proc.pid)]
                subprocess.Popen([shutil.which("py-spy") or "py-spy", *spy], stdout=subprocess.DEVNULL)
        if not wait_ready:
            return
        deadline = time.monotonic() + 30
        while await self.client.zcard(self.names.daemons) < self.daemons:
            if time.monotonic() > deadline or self.group.crashed():
                raise RuntimeError(f"{self.name} did not start:\n{self.group.log_tail()}")
            await asyncio.sleep(0.02)

    async def schedule(self, items: Sequence[Item], *, raw: bool = False) -> None:
        """Raw ``SET … PXAT`` keys, or the public API's bulk call (validation, pipelined scripts)."""
        if raw:
            await write_raw(self.client, items)
        else:
            await self.api.schedule_many((key, None, When(at=due)) for key, due in items)

    async def done(self) -> bool:
        """As many occurrences completed as the scenario expects (the shared ``fired`` counter)."""
        return int(await self.client.hget(self.names.stats, "fired") or 0) >= self.expect

    def cpu_s(self) -> float:
        """CPU seconds of the daemon processes so far."""
        return self.group.cpu_s()

    async def stop(self) -> list[Fire]:
        """SIGTERM (the no-op writes its records at close) and read every instance's file."""
        await self.group.terminate()
        fires: list[Fire] = []
        for path in sorted(self.group.dir.glob("fires-*.tsv")):
            fires += read_fires(path)
        return fires

    async def close(self) -> None:
        """Stop anything still running, close the API client and remove the temporary directory."""
        await self.group.terminate()
        await self.client.aclose()
        shutil.rmtree(self.group.dir, ignore_errors=True)
