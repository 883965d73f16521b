"""A private redis-server for single-host installs (``redis.url: embedded``).

The server listens on a unix socket in the state directory (mode 700), and on a loopback
TCP port only when configured (``reminderd.storage.embedded_access``), persists with an
append-only file fsynced every second, emits expired events and never evicts. One process
owns it: the one holding an ``flock`` on ``redis.lock``.

- The daemon uses ``EmbeddedRedis(dir)`` (``exclusive=True``): it waits for the lock,
  starts the server, restarts it if it dies and stops it on exit.
- The CLI uses ``connect_or_start(dir, create=False)``: it reuses the daemon's running
  server, or, if no one owns it but a daemon has run there before, starts one for the
  duration of the command. A reminder scheduled while the daemon is down is thus written
  to the AOF and found at the next start. (A daemon starting meanwhile waits for the
  command to finish, then takes over.) A directory no server ever ran in is refused.

The lock dies with its holder, but a server started by a holder killed with SIGKILL may
outlive it; the next owner shuts such an orphan down (which fsyncs its AOF) and starts
its own, so that every running server has a live supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType

import structlog

from reminderd.config.model import RedisSettings
from reminderd.errors import ConfigError, RedisUnavailableError
from reminderd.storage.embedded_access import Access
from reminderd.storage.embedded_setup import (
    LOCK_NAME,
    LOG_NAME,
    Timeouts,
    child_options,
    default_dir,
    dir_owner_if_root,
    embedded_url,
    find_redis_server,
    holds_data,
    log_tail,
    ping,
    server_args,
    socket_path,
    state_dir,
    stop_orphan,
    try_flock,
    unix_url,
)
from reminderd.storage.server_binary import find_server

# The lookup helpers from reminderd.storage.embedded_setup are re-exported under this module's name.
__all__ = [
    "EmbeddedRedis",
    "Timeouts",
    "connect_or_start",
    "default_dir",
    "embedded_url",
    "find_redis_server",
    "socket_path",
]

log = structlog.get_logger(__name__)
_LOCK_NOTE = "another process owns this embedded Redis: waiting for it to stop (exit 3 after timeout_s)"


class EmbeddedRedis:
    """Async context manager that owns (or, with ``exclusive=False``, may reuse) the server."""

    def __init__(
        self,
        state_dir: Path | None = None,
        binary: str | None = None,
        *,
        exclusive: bool = True,
        timeouts: Timeouts = Timeouts(),
    ) -> None:
        self.dir = state_dir or default_dir()
        self._binary = binary
        self._exclusive = exclusive
        self._start_timeout_s = timeouts.start_s
        self._stop_timeout_s = timeouts.stop_s
        self._lock_timeout_s = timeouts.lock_s
        self._lock_fd: int | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._watch: asyncio.Task[None] | None = None
        self.restarts = 0
        self.access = Access()  # socket only, no password: what tests and the plain constructor get

    @classmethod
    def for_settings(cls, settings: RedisSettings, *, exclusive: bool = True) -> EmbeddedRedis:
        """The server ``redis.embedded`` describes, with its TCP listener and password if set."""
        server = cls(state_dir(settings.embedded), settings.embedded.binary, exclusive=exclusive)
        server.access = Access.of(settings)
        return server

    @property
    def socket(self) -> Path:
        """The unix socket path."""
        return socket_path(self.dir)

    @property
    def url(self) -> str:
        """``unix://<dir>/redis.sock`` for ``redis.asyncio.Redis.from_url``."""
        return unix_url(self.socket)

    @property
    def owner(self) -> bool:
        """True if this object started and supervises the server."""
        return self._lock_fd is not None

    @property
    def pid(self) -> int | None:
        """PID of the server child this object supervises, if any."""
        return self._proc.pid if self._proc else None

    async def __aenter__(self) -> EmbeddedRedis:
        path = self.socket
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise ConfigError(f"redis.embedded.dir: cannot create {str(self.dir)!r}: {exc.strerror}") from exc
        if await self._acquire_lock():
            try:
                server = find_server(self._binary)
                log.info("redis.embedded.server", server=str(server))
                binary = server.path
                await stop_orphan(path, self.access, self._stop_timeout_s)
                await self._spawn(binary)
            except BaseException:
                self._release_lock()
                raise
            self._watch = asyncio.create_task(self._supervise(binary), name="embedded-redis-watch")
        else:
            await self._wait_for_ping(path, None)
            log.info("redis.embedded.reused", socket=str(path))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.wait([self._watch])
            self._watch = None
        if self._proc is not None:
            await self._terminate(self._proc)
            log.info("redis.embedded.stopped", pid=self._proc.pid, code=self._proc.returncode)
            self._proc = None
        self._release_lock()

    async def _acquire_lock(self) -> bool:
        """Take the ownership lock: wait for it if exclusive, else try once."""
        fd = self._open(LOCK_NAME, os.O_RDWR)
        try:
            deadline, waited = time.monotonic() + self._lock_timeout_s, False
            while not try_flock(fd):
                if not self._exclusive:
                    os.close(fd)
                    return False
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                if time.monotonic() > deadline:
                    raise RedisUnavailableError(
                        f"the embedded Redis in {self.dir} is owned by another process (pid {holder}); "
                        "stop it, or give this daemon its own redis.embedded.dir"
                    )
                if not waited:  # one line, before the wait: an operator must not think it hangs
                    waited = True
                    log.warning(
                        "redis.embedded.lock_wait", dir=str(self.dir), owner_pid=holder,
                        timeout_s=self._lock_timeout_s,
                        note=_LOCK_NOTE,
                    )  # fmt: skip
                await asyncio.sleep(0.05)
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd
        return True

    def _open(self, name: str, flags: int) -> int:
        """Open (create) a file in the dir, owned like the dir so the service user can use it."""
        fd = os.open(self.dir / name, flags | os.O_CREAT | os.O_CLOEXEC, 0o600)
        ids = dir_owner_if_root(self.dir)
        if ids:
            os.fchown(fd, *ids)
        return fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the last descriptor drops the flock
            self._lock_fd = None

    async def _spawn(self, binary: str) -> None:
        """Start the child in its own session (a terminal's Ctrl-C must not kill it mid-drain)."""
        out = self._open(LOG_NAME, os.O_WRONLY | os.O_APPEND)
        try:  # fatal errors before the logfile is open go to stderr: keep them in the log too
            self._proc = await asyncio.create_subprocess_exec(
                binary, *server_args(self.dir, self.access), stdin=asyncio.subprocess.PIPE,
                stdout=out, stderr=out, start_new_session=True, **child_options(self.dir),
            )  # fmt: skip
        finally:
            os.close(out)
        await self._feed_config(self._proc)
        await self._wait_for_ping(self.socket, self._proc)
        log.info("redis.embedded.started", pid=self._proc.pid, socket=str(self.socket))

    async def _feed_config(self, proc: asyncio.subprocess.Process) -> None:
        """Send the config lines that must not appear on the command line, then end stdin."""
        assert proc.stdin is not None
        with contextlib.suppress(OSError):  # a server that died at once is reported by the ping wait
            proc.stdin.write((self.access.config_text() or "").encode())
            await proc.stdin.drain()
        proc.stdin.close()

    async def _wait_for_ping(self, path: Path, proc: asyncio.subprocess.Process | None) -> None:
        deadline = time.monotonic() + self._start_timeout_s
        while not await ping(path):
            if proc is not None and proc.returncode is not None:
                raise RedisUnavailableError(
                    f"embedded redis-server exited with code {proc.returncode}: {log_tail(self.dir)}"
                )
            if time.monotonic() > deadline:
                raise RedisUnavailableError(
                    f"embedded redis-server on {path} did not answer within {self._start_timeout_s:g}s"
                    + (f": {log_tail(self.dir)}" if proc else "")
                )
            await asyncio.sleep(0.02)

    async def _supervise(self, binary: str) -> None:
        """Restart the server whenever it dies, backing off while it keeps failing."""
        delay_s = 0.1
        while self._proc is not None:
            started_s = time.monotonic()
            code = await self._proc.wait()
            log.error("redis.embedded.exited", pid=self._proc.pid, code=code)
            if time.monotonic() - started_s > 60:
                delay_s = 0.1
            while True:
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 30.0)
                try:
                    await self._spawn(binary)
                except RedisUnavailableError as exc:
                    log.error("redis.embedded.restart_failed", error=str(exc), retry_in_s=delay_s)
                    if self._proc.returncode is None:
                        await self._terminate(self._proc)
                    continue
                self.restarts += 1
                log.warning("redis.embedded.restarted", pid=self._proc.pid, previous_code=code)
                break

    async def _terminate(self, proc: asyncio.subprocess.Process) -> None:
        """SIGTERM (the server fsyncs its AOF and exits), SIGKILL after the timeout."""
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), self._stop_timeout_s)
            except TimeoutError:
                log.error("redis.embedded.kill", pid=proc.pid, timeout_s=self._stop_timeout_s)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()


@asynccontextmanager
async def connect_or_start(
    state_dir: Path | None = None,
    binary: str | None = None,
    *,
    start_timeout_s: float = 30.0,
    create: bool = True,
    access: Access | None = None,
) -> AsyncIterator[str]:
    """The URL of the running embedded server, starting one for the block if none runs.

    With ``create=False`` (the CLI) a directory where no server runs and none ever ran is
    an error naming it: a command must not quietly start a new, empty Redis that no
    daemon reads.
    """
    embedded = EmbeddedRedis(state_dir, binary, exclusive=False, timeouts=Timeouts(start_s=start_timeout_s))
    embedded.access = access or embedded.access
    if not create and not holds_data(embedded.dir) and not await ping(embedded.socket):
        raise RedisUnavailableError(
            f"no embedded Redis in {embedded.dir}: no daemon runs there and it holds no data yet; "
            "start the daemon (reminderd run), or give this command the daemon's config (-c FILE)"
        )
    async with embedded as server:
        yield server.url
