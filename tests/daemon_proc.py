"""Run ``reminderd run`` as a real subprocess and read its JSON log lines.

Used by the daemon tests and the fault-injection suite: start, wait for a log event,
send real signals, kill -9, restart.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

Event = dict[str, Any]


def write_config(path: Path, redis_url: str, **sections: Any) -> Path:
    """Write a config file: JSON logs, fast sweeps, plus the given top-level sections."""
    data: dict[str, Any] = {
        "redis": {"url": redis_url},
        "logging": {"format": "json", "level": "info"},
        "daemon": {"sweep_interval": "500ms", "heartbeat_interval": "1s", "lease": "5s"},
    }
    for name, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(name), dict):
            data[name] = {**data[name], **value}
        else:
            data[name] = value
    path.write_text(yaml.safe_dump(data))
    return path


class DaemonProcess:
    """One ``python -m reminderd run`` child with its log captured to a file."""

    def __init__(self, config: Path, *, env: dict[str, str] | None = None, name: str = "d") -> None:
        self.config = config
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.env.pop("REMINDERD_REDIS_URL", None)  # the config file names the server
        self.env.update(env or {})
        self.log_path = Path(tempfile.mkstemp(prefix=f"reminderd-{name}-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None
        self._offset = 0
        self.events: list[Event] = []

    def start(self, *, wait_ready: bool = True, timeout_s: float = 20) -> DaemonProcess:
        """Start the daemon; by default wait for its ``daemon.started`` line."""
        out = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "reminderd", "run", "--config", str(self.config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        out.close()
        if wait_ready:
            self.wait_for("daemon.started", timeout_s=timeout_s)
        return self

    def read(self) -> list[Event]:
        """Parse any new log lines; returns all events so far."""
        with self.log_path.open("rb") as fh:
            fh.seek(self._offset)
            chunk = fh.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._offset += len(complete)
        for line in complete.decode(errors="replace").split("\n"):  # not splitlines: U+2028 in JSON
            if not line:
                continue
            try:
                self.events.append(json.loads(line))
            except ValueError:
                self.events.append({"event": "<non-json>", "text": line})
        return self.events

    def find(self, event: str, pred: Callable[[Event], bool] = lambda e: True) -> list[Event]:
        """All events named ``event`` that satisfy ``pred``."""
        return [e for e in self.read() if e.get("event") == event and pred(e)]

    def wait_for(
        self,
        event: str,
        pred: Callable[[Event], bool] = lambda e: True,
        *,
        count: int = 1,
        timeout_s: float = 15,
    ) -> list[Event]:
        """Wait until ``count`` matching events were logged; fails with the log tail."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = self.find(event, pred)
            if len(found) >= count:
                return found
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"{event} x{count} not seen within {timeout_s}s; log tail:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        """The last lines of the log, for failure messages."""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def signal(self, sig: int) -> None:
        """Send a real signal."""
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait_exit(self, timeout_s: float = 30) -> int:
        """Wait for the process to end; its exit code."""
        assert self.proc is not None
        return self.proc.wait(timeout_s)

    def stop(self, timeout_s: float = 30) -> int:
        """SIGTERM and wait."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.signal(signal.SIGTERM)
        return self.wait_exit(timeout_s)

    def kill(self) -> None:
        """kill -9: a crash with no drain."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def close(self) -> None:
        """Kill if still running and remove the log file."""
        self.kill()
        self.log_path.unlink(missing_ok=True)


def wait_until(pred: Callable[[], bool], timeout_s: float = 15, message: str = "condition") -> None:
    """Poll ``pred`` until true, or fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"{message} not reached within {timeout_s}s")
