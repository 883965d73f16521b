"""Raw keys into the embedded Redis: ``reminderd redis-cli`` and the optional TCP listener.

The daemon and the commands are real processes; PATH holds the virtualenv's bin directory
alone, so no ``redis-cli`` or ``redis-server`` of the machine takes part.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import yaml

from reminderd.cli.raw import reply_lines
from reminderd.config import load_config_text
from reminderd.errors import ConfigError
from reminderd.storage.embedded import EmbeddedRedis
from reminderd.storage.embedded_access import Access
from tests.daemon_proc import DaemonProcess
from tests.redis_server import free_port

REPO = Path(__file__).resolve().parent.parent
PASSWORD = 'p"w d\\x'  # a quote, a space and a backslash: quoting must survive all three


@pytest.fixture
def state() -> Iterator[Path]:
    """A short state dir (the socket path must fit in 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="rd-raw-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def bare_env() -> dict[str, str]:
    """The environment with PATH reduced to the virtualenv's bin dir and no reminderd overrides."""
    drop = ("REMINDERD_REDIS_URL", "REMINDERD_CONFIG", "STATE_DIRECTORY", "REMINDERD_REDIS_SERVER")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(PATH=str(Path(sys.executable).parent), PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    return env


def write_config(state: Path, port: int) -> Path:
    """An embedded-Redis config in ``state`` with a password and TCP ``port``; JSON logs, fast sweeps."""
    config = {
        "redis": {"url": "embedded", "password": PASSWORD, "embedded": {"dir": str(state), "port": port}},
        "logging": {"format": "json", "level": "info"},
        "daemon": {"sweep_interval": "500ms", "heartbeat_interval": "1s"},
    }
    path = state / "reminderd.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def reminderd(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m reminderd -c CONFIG ARGS`` with nothing else on PATH."""
    return subprocess.run(
        [sys.executable, "-m", "reminderd", "-c", str(config), *args],
        capture_output=True, text=True, env=bare_env(), timeout=60, check=False,
    )  # fmt: skip


@pytest.fixture
def daemon(state: Path) -> Iterator[DaemonProcess]:
    """A real daemon on an embedded Redis with a TCP listener on a free loopback port."""
    port = free_port()
    config = write_config(state, port)
    proc = DaemonProcess(config, env=bare_env(), name="raw")
    proc.env = bare_env()
    proc.port = port  # type: ignore[attr-defined]
    proc.start(timeout_s=30)
    yield proc
    try:
        proc.stop(30)
    finally:
        proc.close()


def test_redis_cli_passthrough_writes_a_raw_key_that_fires(daemon: DaemonProcess) -> None:
    """``reminderd redis-cli SET ... EX`` needs no redis-cli: it prints OK and the daemon fires the key."""
    assert shutil.which("redis-cli", path=bare_env()["PATH"]) is None
    wrote = reminderd(daemon.config, "redis-cli", "SET", "send_message-42-welcome", "1", "EX", "1")
    assert (wrote.returncode, wrote.stdout, wrote.stderr) == (0, "OK\n", "")
    daemon.wait_for("reminder.fired", lambda e: e["key"] == "send_message-42-welcome", timeout_s=15)
    ttl = reminderd(daemon.config, "redis-cli", "TTL", "send_message-42-welcome")
    assert ttl.stdout == "-2\n"
    bad = reminderd(daemon.config, "redis-cli", "NOSUCHCOMMAND", "x")
    assert bad.returncode == 2
    assert bad.stderr.startswith("reminderd: (error) unknown command")


def test_tcp_listener_takes_raw_keys_with_the_password(daemon: DaemonProcess) -> None:
    """Another program on the host writes a trigger key over loopback TCP, with the password only."""
    port: int = daemon.port  # type: ignore[attr-defined]
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port, socket_timeout=5).ping()
    client = redis.Redis(port=port, password=PASSWORD, socket_timeout=5, decode_responses=True)
    try:
        assert client.config_get("bind") == {"bind": "127.0.0.1"}
        client.set("send_message-7-tcp", "1", px=500)
        daemon.wait_for("reminder.fired", lambda e: e["key"] == "send_message-7-tcp", timeout_s=15)
    finally:
        client.close()
    server_pid = int(daemon.find("redis.embedded.started")[-1]["pid"])
    assert PASSWORD.encode() not in Path(f"/proc/{server_pid}/cmdline").read_bytes()


async def test_no_tcp_port_by_default(state: Path) -> None:
    """The plain embedded server listens on its unix socket alone."""
    async with EmbeddedRedis(state) as server:
        client = redis.Redis(unix_socket_path=str(server.socket), decode_responses=True)
        try:
            assert client.config_get("port") == {"port": "0"}
            assert client.config_get("requirepass") == {"requirepass": ""}
        finally:
            client.close()


async def test_acl_user_from_the_config(state: Path) -> None:
    """With redis.username the password belongs to that ACL user, and the default user is off."""
    settings = load_config_text(f"redis: {{username: app, password: '{PASSWORD}'}}\n").redis
    server = EmbeddedRedis.for_settings(settings)
    server.dir = state
    async with server:
        sock = str(server.socket)
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(unix_socket_path=sock, password=PASSWORD).ping()
        client = redis.Redis(unix_socket_path=sock, username="app", password=PASSWORD)
        try:
            assert client.ping()
        finally:
            client.close()


def test_listener_needs_a_password() -> None:
    """A TCP port without redis.password is refused when the config is loaded."""
    with pytest.raises(ConfigError) as info:
        load_config_text("redis: {embedded: {port: 6390}}\n", "r.yaml")
    assert str(info.value) == (
        "r.yaml: redis: embedded.port opens a TCP listener, which needs a password "
        "(any local user could reach it)"
    )
    assert Access(port=6390, password="x").args() == ["--port", "6390", "--bind", "127.0.0.1"]


def test_reply_lines_print_like_redis_cli_raw() -> None:
    """Nil is an empty line, arrays one element a line, integers and booleans as digits."""
    assert list(reply_lines(None)) == [""]
    assert list(reply_lines(["a", [b"b", 3], True])) == ["a", "b", "3", "1"]
    assert list(reply_lines({"k": "v"})) == ["k", "v"]
