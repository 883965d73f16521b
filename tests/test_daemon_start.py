"""What ``reminderd run`` says when it cannot start serving: a taken embedded Redis, an absent Redis.

Real daemons against a real embedded server, and against a loopback port that accepts
connections and closes them at once (so every reconnect attempt can be counted).
"""

from __future__ import annotations

import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from reminderd.storage.connection import UnreachableNotice
from tests.daemon_proc import DaemonProcess, wait_until, write_config


@pytest.fixture
def state() -> Iterator[Path]:
    """A short state dir (the socket path must fit in 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="rd-start-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class SlammingPort:
    """A loopback port that accepts each connection and closes it at once, counting them."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.accepted = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        """Stop accepting."""
        self.sock.close()
        self._thread.join(5)


def test_second_run_announces_the_wait_and_exits_3(
    tmp_path: Path, state: Path, daemon_procs: list[DaemonProcess]
) -> None:
    """A second daemon on the same embedded Redis says at once whom it waits for, then exits 3."""
    cfg = write_config(
        tmp_path / "cfg.yaml", "embedded", redis={"url": "embedded", "embedded": {"dir": str(state)}}
    )
    first = DaemonProcess(cfg, name="first")
    daemon_procs.append(first)
    first.start(timeout_s=30)
    assert first.proc is not None
    second = DaemonProcess(cfg, name="second")
    daemon_procs.append(second)
    second.start(wait_ready=False)
    wait = second.wait_for("redis.embedded.lock_wait", timeout_s=10)[0]
    assert (wait["level"], wait["owner_pid"], wait["dir"]) == ("warning", str(first.proc.pid), str(state))
    assert second.wait_exit(30) == 3
    failed = second.find("daemon.failed")[0]
    assert f"owned by another process (pid {first.proc.pid})" in failed["error"]


def test_run_without_redis_names_the_url_once(tmp_path: Path, daemon_procs: list[DaemonProcess]) -> None:
    """While Redis refuses it, the daemon logs the masked URL and what to check once, not every retry."""
    port = SlammingPort()
    try:
        url = f"redis://app:s3cret@127.0.0.1:{port.port}/0"
        proc = DaemonProcess(write_config(tmp_path / "cfg.yaml", url), name="away")
        daemon_procs.append(proc)
        proc.start(wait_ready=False)
        line = proc.wait_for("redis.unavailable", timeout_s=15)[0]
        seen = port.accepted
        wait_until(lambda: port.accepted >= seen + 3, timeout_s=20, message="three more reconnect attempts")
        assert len(proc.find("redis.unavailable")) == 1
        assert line["url"] == f"redis://app:***@127.0.0.1:{port.port}/0"
        assert line["check"].startswith("check redis.url (or $REMINDERD_REDIS_URL)")
        assert "s3cret" not in proc.log_path.read_text()
        proc.signal(signal.SIGTERM)
        assert proc.wait_exit(30) == 0
    finally:
        port.close()


def test_unreachable_notice_repeats_once_a_minute() -> None:
    """The unreachable line is owed at the first failure and then once per minute, not per retry."""
    notice = UnreachableNotice("redis://:pw@h:1/0")
    assert [notice.due(t) for t in (100.0, 101.0, 159.9, 160.0, 170.0, 220.0)] == [
        True, False, False, True, False, True,
    ]  # fmt: skip
    assert notice.fields(ConnectionRefusedError(111, "refused"))["url"] == "redis://:***@h:1/0"
