"""The first hour of a new user: the README's snippet, one state directory, honest errors.

Daemon, CLI and the Python snippet are real processes sharing one embedded Redis through a
config file, as on a fresh clone; the state directory is a short temp dir (a unix socket
path must fit in 107 bytes) named either by the config or by ``$STATE_DIRECTORY``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.daemon_proc import DaemonProcess

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Clone:
    """A working dir holding ``config/reminderd.yaml``, a state dir, and a clean environment."""

    work: Path
    state: Path
    env: dict[str, str]

    @property
    def config(self) -> Path:
        """The config file, as the README names it from the clone's root."""
        return self.work / "config" / "reminderd.yaml"

    def run(self, args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """A real process in ``cwd`` (default: the clone's root) with the clean environment."""
        return subprocess.run(
            args, capture_output=True, text=True, env=self.env, cwd=cwd or self.work, timeout=60, check=False
        )

    def cli(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """``python -m reminderd ARGS``."""
        return self.run([sys.executable, "-m", "reminderd", *args], cwd)


@pytest.fixture
def clone() -> Iterator[Clone]:
    """A clone's root with the repository's example config; $STATE_DIRECTORY names a state dir beside it."""
    work = Path(tempfile.mkdtemp(prefix="rd-new-"))
    (work / "config").mkdir()
    shutil.copy(REPO / "config" / "reminderd.yaml", work / "config" / "reminderd.yaml")
    drop = ("REMINDERD_REDIS_URL", "REMINDERD_CONFIG", "STATE_DIRECTORY", "REMINDERD_REDIS_SERVER")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", STATE_DIRECTORY=str(work / "state"))
    yield Clone(work, work / "state", env)
    shutil.rmtree(work, ignore_errors=True)


def start_daemon(clone: Clone, daemon_procs: list[DaemonProcess]) -> DaemonProcess:
    """``reminderd run --config <clone>/config/reminderd.yaml`` in the clone's environment."""
    proc = DaemonProcess(clone.config, name="first-hour")
    proc.env = dict(clone.env)
    daemon_procs.append(proc)
    return proc.start(timeout_s=30)


def readme_snippet() -> str:
    """The README's Python example, exactly as printed there."""
    text = (REPO / "README.md").read_text()
    found = re.search(r"From Python.*?```python\n(.*?)```", text, re.DOTALL)
    assert found, "no Python snippet in the README"
    return found.group(1)


def test_readme_snippet_reaches_the_daemon_of_the_first_command(
    clone: Clone, daemon_procs: list[DaemonProcess]
) -> None:
    """The README's snippet, run as written from the clone, schedules into the running daemon's Redis."""
    start_daemon(clone, daemon_procs)
    ran = clone.run([sys.executable, "-c", readme_snippet()])
    assert ran.returncode == 0, ran.stderr
    assert "send_message-42-welcome" in ran.stdout
    listed = clone.cli("list", "--json", cwd=Path("/"))
    assert listed.returncode == 0, listed.stderr
    keys = {row["key"] for row in yaml.safe_load(listed.stdout)}
    assert {"send_message-42-welcome", "send_message-42-daily", "send_message-7-checkout"} <= keys


def test_snippet_without_a_daemon_says_where_it_looked(clone: Clone) -> None:
    """With no daemon, the API raises one RedisUnavailableError naming the socket it tried."""
    ran = clone.run([sys.executable, "-c", readme_snippet()])
    assert ran.returncode == 1
    assert ran.stderr.splitlines()[-1] == (
        f"reminderd.errors.RedisUnavailableError: no embedded Redis answers at {clone.state}/redis.sock: "
        "start the daemon (reminderd run) with this config first"
    )
    assert not clone.state.exists()


def test_cli_from_another_directory_uses_the_config_s_state_dir(
    clone: Clone, daemon_procs: list[DaemonProcess], tmp_path: Path
) -> None:
    """A relative embedded.dir is relative to the config file: daemon and CLI agree from any cwd."""
    settings = yaml.safe_load(clone.config.read_text())
    settings["redis"]["embedded"] = {"dir": "../state"}
    settings["logging"] = {"format": "json", "level": "info"}
    clone.config.write_text(yaml.safe_dump(settings))
    start_daemon(clone, daemon_procs)
    assert (clone.state / "redis.sock").is_socket()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    wrote = clone.cli("-c", str(clone.config), "schedule", "send_message-1-x", "--in", "1h", cwd=elsewhere)
    assert wrote.returncode == 0, wrote.stderr
    listed = clone.cli("list", cwd=clone.work)
    assert listed.returncode == 0, listed.stderr
    assert "send_message-1-x" in listed.stdout
    assert not (elsewhere / "state").exists()


def test_cli_never_starts_a_new_empty_embedded_redis(clone: Clone, tmp_path: Path) -> None:
    """Where no daemon ever ran, schedule exits 3 naming the dir and config, and creates nothing."""
    ran = clone.cli("schedule", "send_message-1-x", "--in", "1h", cwd=tmp_path)
    system = Path("/etc/reminderd/reminderd.yaml")
    used = str(system) if system.exists() else "none found, built-in defaults"
    assert ran.returncode == 3
    assert ran.stderr == (
        f"reminderd: no embedded Redis in {clone.state}: no daemon runs there and it holds no data yet; "
        "start the daemon (reminderd run), or give this command the daemon's config (-c FILE) "
        f"(config: {used})\n"
    )
    assert not clone.state.exists()
