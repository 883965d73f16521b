"""The fired-marker window follows ``daemon.raw_dedupe_window`` across a reload (a real daemon)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from reminderd.storage.names import Names
from tests.daemon_proc import DaemonProcess, wait_until, write_config

KEY = "send_message-42-welcome"


@pytest.fixture
def daemon(tmp_path: Path, redis_url: str) -> Iterator[DaemonProcess]:
    """A daemon started with a 2 s dedupe window, killed at the end."""
    proc = DaemonProcess(write_config(tmp_path / "cfg.yaml", redis_url, daemon={"raw_dedupe_window": "2s"}))
    yield proc.start()
    proc.close()


def test_reloaded_dedupe_window_applies_to_the_next_fired_marker(
    daemon: DaemonProcess, redis_url: str, sync_redis: redis.Redis
) -> None:
    """After SIGHUP raises raw_dedupe_window to 60 s, a raw one-shot that fires is remembered for 60 s.

    A raw key, since its expiry raises an expired event; an API reminder the timer disarmed
    raises none and needs no marker.
    """
    write_config(daemon.config, redis_url, daemon={"raw_dedupe_window": "60s"})
    daemon.signal(signal.SIGHUP)
    daemon.wait_for("config.reloaded")
    sync_redis.set(KEY, "1", px=200)
    fired = Names().fired(KEY)
    wait_until(lambda: bool(sync_redis.exists(fired)), 10, "the fired marker")
    assert 50_000 < int(sync_redis.pttl(fired)) <= 60_000  # type: ignore[arg-type]
