"""The systemd notification protocol (``sd_notify``), spoken directly.

The protocol is one ``AF_UNIX`` datagram of ``KEY=value`` lines sent to the socket
named by ``$NOTIFY_SOCKET`` (a leading ``@`` means the Linux abstract namespace). It is
small enough that a dependency would cost more than it saves.

Notifying is best effort by design: a daemon must never stop firing reminders because
the service manager's socket is gone or full. So outside systemd every call is a no-op,
and a failed send is logged once and otherwise ignored. The socket is non-blocking, so
a full receive queue cannot stall the event loop.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

import structlog

log = structlog.get_logger(__name__)


def _address(raw: str) -> str:
    """The socket address for ``$NOTIFY_SOCKET``: ``@name`` is the abstract ``\\0name``."""
    return "\0" + raw[1:] if raw.startswith("@") else raw


def _watchdog_usec(env: Mapping[str, str], pid: int) -> int | None:
    """``$WATCHDOG_USEC`` if it is meant for this process and is a positive integer."""
    owner = env.get("WATCHDOG_PID")
    if owner is not None and owner.strip() != str(pid):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec if usec > 0 else None


def monotonic_usec() -> int:
    """``CLOCK_MONOTONIC`` in microseconds, the clock systemd compares reload stamps with."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class Notifier:
    """Sends state changes to the service manager; a no-op when there is none."""

    def __init__(self, socket_path: str | None, *, watchdog_usec: int | None = None) -> None:
        self._address = _address(socket_path) if socket_path else None
        self._watchdog_usec = watchdog_usec
        self._sock: socket.socket | None = None
        self._failed = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Notifier:
        """A notifier configured from ``$NOTIFY_SOCKET``, ``$WATCHDOG_USEC``, ``$WATCHDOG_PID``."""
        env = os.environ if env is None else env
        return cls(env.get("NOTIFY_SOCKET") or None, watchdog_usec=_watchdog_usec(env, os.getpid()))

    @property
    def enabled(self) -> bool:
        """Whether a service manager listens (``$NOTIFY_SOCKET`` was set)."""
        return self._address is not None

    def watchdog_interval_s(self) -> float | None:
        """How often to call ``watchdog()``: half the configured timeout, or None if off."""
        if self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2_000_000

    def ready(self, status: str | None = None) -> None:
        """Start-up (or a reload) is complete; systemd starts dependent units."""
        self.send("READY=1", *self._status_line(status))

    def status(self, text: str) -> None:
        """A one-line human status shown by ``systemctl status``."""
        self.send(*self._status_line(text))

    def watchdog(self) -> None:
        """Keep-alive ping; missing it for ``WatchdogSec=`` makes systemd restart us."""
        self.send("WATCHDOG=1")

    def reloading(self) -> None:
        """A reload began; call ``ready()`` when it is done (notify-reload protocol)."""
        self.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}")

    def stopping(self, status: str | None = None) -> None:
        """Shutdown began (draining); systemd shows the unit as deactivating."""
        self.send("STOPPING=1", *self._status_line(status))

    def send(self, *lines: str) -> bool:
        """Send one datagram of ``KEY=value`` lines; True if it was sent."""
        if self._address is None or not lines:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto("\n".join(lines).encode(), self._address)
        except OSError as exc:
            self._log_failure(exc)
            return False
        return True

    def close(self) -> None:
        """Release the socket; later calls open a new one."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _log_failure(self, exc: OSError) -> None:
        """Warn on the first failure only: a broken socket would otherwise flood the log."""
        if not self._failed:
            self._failed = True
            log.warning("sdnotify.send_failed", socket=self._address, error=str(exc))

    @staticmethod
    def _status_line(text: str | None) -> tuple[str, ...]:
        """``STATUS=`` with newlines flattened, since one line is one field."""
        if text is None:
            return ()
        return ("STATUS=" + " ".join(text.splitlines()),)
