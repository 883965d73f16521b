"""sd_notify against a real datagram socket standing in for systemd."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from reminderd.telemetry.systemd import Notifier, monotonic_usec


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """A bound SOCK_DGRAM socket in tmp_path, as systemd's notify socket would be."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    yield str(path), sock
    sock.close()


def receive(sock: socket.socket) -> list[str]:
    """One datagram, split into its lines."""
    return sock.recv(4096).decode().split("\n")


def test_ready_sends_ready_and_status(listener: tuple[str, socket.socket]) -> None:
    """ready() sends READY=1 and a STATUS line in one datagram."""
    path, sock = listener
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path})
    notifier.ready("serving 3 rules")
    assert receive(sock) == ["READY=1", "STATUS=serving 3 rules"]
    notifier.close()


def test_each_message_kind(listener: tuple[str, socket.socket]) -> None:
    """status, watchdog and stopping send the protocol's field names."""
    path, sock = listener
    notifier = Notifier(path)
    notifier.status("draining\n2 in flight")
    assert receive(sock) == ["STATUS=draining 2 in flight"]
    notifier.watchdog()
    assert receive(sock) == ["WATCHDOG=1"]
    notifier.stopping()
    assert receive(sock) == ["STOPPING=1"]
    notifier.close()


def test_reloading_carries_monotonic_timestamp(listener: tuple[str, socket.socket]) -> None:
    """reloading() sends RELOADING=1 with MONOTONIC_USEC from CLOCK_MONOTONIC."""
    path, sock = listener
    notifier = Notifier(path)
    before = monotonic_usec()
    notifier.reloading()
    notifier.close()
    after = monotonic_usec()
    lines = receive(sock)
    assert lines[0] == "RELOADING=1"
    key, value = lines[1].split("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after
    assert abs(before / 1e6 - time.monotonic()) < 5


def test_abstract_namespace_socket() -> None:
    """An ``@name`` NOTIFY_SOCKET reaches a socket bound in the abstract namespace."""
    name = f"reminderd-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        notifier = Notifier.from_env({"NOTIFY_SOCKET": "@" + name})
        assert notifier.enabled
        notifier.watchdog()
        assert receive(sock) == ["WATCHDOG=1"]
        notifier.close()


def test_no_socket_is_a_no_op() -> None:
    """Without NOTIFY_SOCKET every call does nothing and reports not sent."""
    notifier = Notifier.from_env({})
    assert not notifier.enabled
    notifier.close()
    notifier.ready()
    notifier.watchdog()
    assert notifier.send("READY=1") is False
    assert notifier.watchdog_interval_s() is None


def test_send_error_is_logged_once_and_never_raised(tmp_path: Path) -> None:
    """A socket that does not exist makes sends fail quietly, with one warning in total."""
    notifier = Notifier(str(tmp_path / "missing.sock"))
    with capture_logs() as logs:
        assert notifier.send("READY=1") is False
        notifier.watchdog()
        notifier.stopping()
    assert [entry["event"] for entry in logs] == ["sdnotify.send_failed"]
    assert logs[0]["log_level"] == "warning"
    notifier.close()


def test_watchdog_interval_is_half_the_timeout() -> None:
    """WATCHDOG_USEC=30 s gives a 15 s ping interval."""
    notifier = Notifier.from_env({"WATCHDOG_USEC": "30000000"})
    assert notifier.watchdog_interval_s() == 15.0


def test_watchdog_for_this_pid() -> None:
    """WATCHDOG_PID equal to our PID keeps the watchdog on."""
    env = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier.from_env(env).watchdog_interval_s() == 1.0


@pytest.mark.parametrize(
    "env",
    [
        {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"},
        {"WATCHDOG_USEC": "thirty"},
        {"WATCHDOG_USEC": "0"},
        {"WATCHDOG_USEC": "-5"},
        {"WATCHDOG_USEC": ""},
        {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "not-a-pid"},
    ],
)
def test_watchdog_off_for_other_pid_or_bad_value(env: dict[str, str]) -> None:
    """A watchdog meant for another PID, or a value that is not a positive integer, is off."""
    assert Notifier.from_env(env).watchdog_interval_s() is None
