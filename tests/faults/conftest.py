"""Fixtures of the fault suite: a receiver, and daemons and redis-servers that always die."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_proc import DaemonProcess
from tests.http_receiver import HttpReceiver
from tests.redis_server import RedisServer


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    """A loopback HTTP server standing in for every webhook target."""
    with HttpReceiver() as rec:
        yield rec


class Daemons:
    """Starts daemon subprocesses for one test and kills whatever is left at the end."""

    def __init__(self) -> None:
        self.started: list[DaemonProcess] = []

    def start(self, config: Path, *, name: str = "d", wait_ready: bool = True) -> DaemonProcess:
        """Start ``reminderd run`` on ``config``; by default wait for ``daemon.started``."""
        proc = DaemonProcess(config, name=name)
        self.started.append(proc)
        return proc.start(wait_ready=wait_ready, timeout_s=30)

    def close(self) -> None:
        """Kill every daemon still running and remove the logs (kept with REMINDERD_KEEP_LOGS=1)."""
        for proc in self.started:
            if os.environ.get("REMINDERD_KEEP_LOGS"):
                proc.kill()
                print(f"daemon log kept: {proc.log_path}")
            else:
                proc.close()


@pytest.fixture
def daemons() -> Iterator[Daemons]:
    """A factory of daemon processes, all killed at the end of the test."""
    made = Daemons()
    yield made
    made.close()


class Servers:
    """Starts private redis-servers for one test and removes them at the end."""

    def __init__(self) -> None:
        self.started: list[RedisServer] = []

    def start(self, *args: str, notify: str | None = "Ex") -> RedisServer:
        """A started redis-server with extra command-line ``args``."""
        server = RedisServer(*args, notify=notify)
        self.started.append(server)
        return server.start()

    def close(self) -> None:
        """Kill every server and remove its directory."""
        for server in self.started:
            server.close()


@pytest.fixture
def servers() -> Iterator[Servers]:
    """A factory of private redis-servers, all removed at the end of the test."""
    made = Servers()
    yield made
    made.close()
