"""A daemon whose host clock is 30 s off Redis's: on time, alive in ``status``, its offset shown.

The daemon runs as a subprocess with libfaketime preloaded (the ``libfaketime`` wheel
from the package index), its wall clock shifted and its monotonic clock left alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from reminderd.api import When
from tests.daemon_proc import DaemonProcess
from tests.faults import api, webhook_config
from tests.http_receiver import HttpReceiver

libfaketime = pytest.importorskip("libfaketime", reason="the libfaketime wheel shifts a subprocess's clock")


def shifted_env(shift_s: int) -> dict[str, str]:
    """Environment that preloads libfaketime with the wall clock ``shift_s`` seconds off."""
    needed, env = libfaketime.get_reload_information()
    if not needed and sys.platform != "linux":
        pytest.skip("libfaketime preloads only on Linux and macOS")
    return {**env, "FAKETIME": f"{shift_s:+d}s", "DONT_FAKE_MONOTONIC": "1"}


def status(cfg: Path) -> tuple[int, dict[str, object]]:
    """``reminderd status --json`` on ``cfg``: the exit code and the report."""
    done = subprocess.run(
        [sys.executable, "-m", "reminderd", "status", "--json", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done.returncode, json.loads(done.stdout)


@pytest.mark.slow
@pytest.mark.parametrize("shift_s", [-30, 30])
def test_a_daemon_with_a_shifted_clock_is_alive_on_time_and_shows_its_offset(
    tmp_path: Path, redis_url: str, receiver: HttpReceiver, shift_s: int
) -> None:
    """Host clock 30 s off: the reminder fires on time, status counts the daemon and warns of the offset."""
    cfg = webhook_config(tmp_path / "cfg.yaml", redis_url, receiver, ("a",))
    proc = DaemonProcess(cfg, env=shifted_env(shift_s), name="shifted")
    try:
        proc.start(timeout_s=30)
        proc.wait_for("daemon.started")
        with api(cfg, redis_url) as r:
            r.schedule("send_message-1-clock", when=When(in_=1000))
        [fired] = proc.wait_for("reminder.fired", timeout_s=10)
        assert 0 <= fired["lateness_ms"] < 1000
        code, report = status(cfg)
        assert code == 0, report
        [daemon] = report["daemons"]  # type: ignore[misc]
        assert abs(daemon["clock_offset_ms"] + shift_s * 1000) < 1000
        assert any("host clock 30." in w for w in report["warnings"])  # type: ignore[attr-defined]
    finally:
        proc.close()
