"""A log write never stops delivery: stdout on a full disk, a closed pipe, a pipe nobody reads.

Each test runs a real daemon subprocess whose stdout is the broken stream, 50 reminders
already due, and a ``stream`` processor so delivery is read from Redis, not from the log.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import pytest
import redis

from reminderd.api import When
from reminderd.telemetry.log_output import LogOutput
from tests.daemon_proc import wait_until, write_config
from tests.faults import api

pytestmark = pytest.mark.slow

COUNT = 50
OUT_STREAM = "faults:logs:out"
F_SETPIPE_SZ = 1031  # Linux fcntl: set a pipe's capacity (the smallest is one page)


def _config(tmp_path: Path, redis_url: str) -> Path:
    """A stream processor (delivery, read from Redis) and a log processor (a line per fire)."""
    return write_config(
        tmp_path / "cfg.yaml",
        redis_url,
        processors={"s": {"type": "stream", "stream": OUT_STREAM}, "l": {"type": "log"}},
        rules={"send_message": {"processors": ["s", "l"]}},
        daemon={"sweep_interval": "300ms", "heartbeat_interval": "500ms"},
    )


@contextmanager
def _daemon(cfg: Path, stdout: int | IO[Any]) -> Iterator[subprocess.Popen[bytes]]:
    """``reminderd run`` with ``stdout`` (and stderr) as given; killed if the test fails."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("REMINDERD_REDIS_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "reminderd", "run", "--config", str(cfg)],
        stdout=stdout,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _schedule_due_now(cfg: Path, redis_url: str) -> None:
    """COUNT reminders due now, through the API."""
    with api(cfg, redis_url) as reminders:
        reminders.schedule_many((f"send_message-{i}-logs", {"i": i}, When(in_=0)) for i in range(COUNT))


def _delivered(redis_url: str) -> int:
    """How many occurrences the stream processor wrote."""
    with redis.Redis.from_url(redis_url) as client:
        return int(client.xlen(OUT_STREAM))


def _deliver_all(cfg: Path, redis_url: str, proc: subprocess.Popen[bytes]) -> None:
    """Schedule COUNT reminders due now, wait for every one in the stream, then stop cleanly."""
    _schedule_due_now(cfg, redis_url)
    wait_until(
        lambda: proc.poll() is not None or _delivered(redis_url) >= COUNT,
        timeout_s=30,
        message=f"{COUNT} deliveries",
    )
    assert proc.poll() is None, f"the daemon exited with rc {proc.returncode}"
    assert _delivered(redis_url) == COUNT
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0


def test_stdout_on_a_full_disk_does_not_stop_delivery(tmp_path: Path, redis_url: str) -> None:
    """With stdout on /dev/full (ENOSPC on every write), every due reminder is delivered."""
    cfg = _config(tmp_path, redis_url)
    with open("/dev/full", "wb") as full, _daemon(cfg, full) as proc:
        _deliver_all(cfg, redis_url, proc)


def test_dropped_log_lines_show_in_status(tmp_path: Path, redis_url: str) -> None:
    """A daemon logging to /dev/full counts its dropped lines in its heartbeat, so ``status`` shows them."""
    cfg = _config(tmp_path, redis_url)
    with open("/dev/full", "wb") as full, _daemon(cfg, full) as proc:
        _schedule_due_now(cfg, redis_url)
        wait_until(lambda: (_status_daemons(cfg) or [{}])[0].get("log_dropped", 0) >= COUNT, 30, "log drops")
        assert proc.poll() is None


def _status_daemons(cfg: Path) -> list[dict[str, Any]]:
    """The ``daemons`` of ``reminderd status --json``."""
    done = subprocess.run(
        [sys.executable, "-m", "reminderd", "status", "--json", "--config", str(cfg)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    return list(json.loads(done.stdout)["daemons"])


def test_stdout_on_a_closed_pipe_does_not_stop_delivery(tmp_path: Path, redis_url: str) -> None:
    """With stdout a pipe whose reader has gone (EPIPE), every due reminder is delivered."""
    cfg = _config(tmp_path, redis_url)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        with _daemon(cfg, write_end) as proc:
            _deliver_all(cfg, redis_url, proc)
    finally:
        os.close(write_end)


def test_stdout_on_a_pipe_nobody_reads_does_not_block_delivery(tmp_path: Path, redis_url: str) -> None:
    """A one-page pipe nobody reads fills at once; delivery goes on and the daemon still stops cleanly."""
    cfg = _config(tmp_path, redis_url)
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, F_SETPIPE_SZ, 4096)
    try:
        with _daemon(cfg, write_end) as proc:
            _deliver_all(cfg, redis_url, proc)
    finally:
        os.close(read_end)
        os.close(write_end)


def test_log_output_counts_what_a_failing_stream_refused() -> None:
    """Lines written to /dev/full are dropped and counted, and the caller never sees an error."""
    with open("/dev/full", "w") as full:
        out = LogOutput(full)
        for i in range(10):
            out.write(f"line {i}\n")
        out.close()
    assert out.dropped == 10


def test_log_output_drops_and_counts_when_the_reader_stalls() -> None:
    """A stalled pipe never blocks the caller: lines are dropped and counted; reading resumes output."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, F_SETPIPE_SZ, 4096)
    os.set_blocking(read_end, False)
    marker = b"resumed\n"
    with os.fdopen(write_end, "w") as stream:
        out = LogOutput(stream, queue_lines=10)
        started = time.monotonic()
        for i in range(2000):
            out.write(f"{i:05d} " + "x" * 100 + "\n")
        assert time.monotonic() - started < 1.0
        assert out.dropped > 0
        received = _read_available(read_end)
        out.write(marker.decode())
        deadline = time.monotonic() + 10
        while marker not in received and time.monotonic() < deadline:
            received += _read_available(read_end)
        out.close()
    os.close(read_end)
    assert received.endswith(marker)


def _read_available(fd: int) -> bytes:
    """Whatever a non-blocking pipe holds now (waiting up to 20 ms for something)."""
    deadline = time.monotonic() + 0.02
    chunks: list[bytes] = []
    while time.monotonic() < deadline:
        try:
            chunks.append(os.read(fd, 65536))
        except BlockingIOError:
            time.sleep(0.001)
    return b"".join(chunks)
