"""``reminderd run`` as a service: sd_notify over a real NOTIFY_SOCKET, reload, stop, status, metrics.

Every test runs the daemon as a real subprocess against the private test Redis and
listens on a bound ``AF_UNIX`` datagram socket, exactly where systemd would.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from reminderd.api import Reminders, When
from reminderd.config import load_config
from tests.daemon_proc import DaemonProcess, wait_until, write_config
from tests.http_receiver import HttpReceiver, Reply
from tests.redis_server import RedisServer, free_port

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Datagram:
    """One sd_notify message as received: its lines and the monotonic time it arrived."""

    at_s: float
    lines: tuple[str, ...]

    def has(self, line: str) -> bool:
        """Whether the message carries exactly this ``KEY=value`` line."""
        return line in self.lines

    def field(self, key: str) -> str | None:
        """The value of ``KEY=`` in this message, if present."""
        prefix = key + "="
        return next((line[len(prefix) :] for line in self.lines if line.startswith(prefix)), None)


class NotifySocket:
    """A bound ``SOCK_DGRAM`` socket standing in for systemd's notify socket, read by a thread."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="rd-notify-"))  # short: sun_path is 108 bytes
        self.path = str(self.dir / "notify.sock")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(self.path)
        self._sock.settimeout(0.05)
        self._lock = threading.Lock()
        self._messages: list[Datagram] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._read, name="notify-socket", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._messages.append(Datagram(time.monotonic(), tuple(data.decode().split("\n"))))

    @property
    def messages(self) -> list[Datagram]:
        """Every message received so far, in arrival order."""
        with self._lock:
            return list(self._messages)

    def with_line(self, line: str) -> list[Datagram]:
        """Messages that carry ``line``."""
        return [m for m in self.messages if m.has(line)]

    def wait_for(
        self, pred: Callable[[list[Datagram]], bool], timeout_s: float = 15, what: str = "datagrams"
    ) -> list[Datagram]:
        """Poll until ``pred(messages)`` holds; fails listing what arrived."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = self.messages
            if pred(got):
                return got
            time.sleep(0.01)
        raise AssertionError(
            f"{what} not received within {timeout_s}s; got {[m.lines for m in self.messages]}"
        )

    def wait_line(self, line: str, count: int = 1, timeout_s: float = 15) -> list[Datagram]:
        """Wait until ``count`` messages carried ``line``; those messages."""
        self.wait_for(lambda ms: sum(m.has(line) for m in ms) >= count, timeout_s, f"{line} x{count}")
        return self.with_line(line)

    def close(self) -> None:
        """Stop the reader, close and remove the socket."""
        self._closed.set()
        self._thread.join(2)
        self._sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class ServiceProcess(DaemonProcess):
    """A daemon whose ``$WATCHDOG_PID`` can be its own pid, as systemd sets it."""

    def __init__(self, config: Path, *, env: dict[str, str], watchdog_pid_self: bool = False) -> None:
        super().__init__(config, env=env, name="svc")
        self.watchdog_pid_self = watchdog_pid_self

    def start(self, *, wait_ready: bool = True, timeout_s: float = 20) -> ServiceProcess:
        """Start; with ``watchdog_pid_self`` a shell exports its own pid and execs the daemon in place."""
        if not self.watchdog_pid_self:
            super().start(wait_ready=wait_ready, timeout_s=timeout_s)
            return self
        argv = [sys.executable, "-m", "reminderd", "run", "--config", str(self.config)]
        script = 'WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$@"'
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                ["/bin/sh", "-c", script, "sh", *argv], stdout=out, stderr=subprocess.STDOUT, env=self.env
            )
        if wait_ready:
            self.wait_for("daemon.started", timeout_s=timeout_s)
        return self


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    """The notify socket of the test."""
    sock = NotifySocket()
    yield sock
    sock.close()


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    """A loopback HTTP server standing in for the webhook targets."""
    with HttpReceiver() as rec:
        yield rec


@pytest.fixture
def services() -> Iterator[list[ServiceProcess]]:
    """Daemon processes started by the test, killed (by pid) at the end."""
    started: list[ServiceProcess] = []
    yield started
    for proc in started:
        proc.close()


def service_config(path: Path, url: str, receiver: HttpReceiver, processors: list[str], **extra: Any) -> Path:
    """Two webhook processors (a, b); the send_message rule uses ``processors``."""
    sections: dict[str, Any] = {
        "processors": {
            "a": {"type": "webhook", "url": receiver.url("/a"), "timeout": "10s"},
            "b": {"type": "webhook", "url": receiver.url("/b"), "timeout": "10s"},
        },
        "rules": {"send_message": {"processors": processors}},
        "retry": {"max_attempts": 3, "backoff": "200ms", "backoff_max": "1s"},
    }
    sections.update(extra)
    return write_config(path, url, **sections)


def service(cfg: Path, notify: NotifySocket, services: list[ServiceProcess], **env: str) -> ServiceProcess:
    """A daemon (not started) that reports to ``notify``."""
    proc = ServiceProcess(cfg, env={"NOTIFY_SOCKET": notify.path, **env}, watchdog_pid_self=False)
    services.append(proc)
    return proc


def redis_now_ms(client: redis.Redis) -> int:
    """Redis's clock in milliseconds."""
    sec, usec = client.time()
    return int(sec) * 1000 + int(usec) // 1000


def http_get(url: str) -> tuple[int, bytes]:
    """Status and body of a GET, error statuses included."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def test_ready_only_after_the_startup_sweep(
    tmp_path: Path,
    redis_server: RedisServer,
    redis_url: str,
    receiver: HttpReceiver,
    notify: NotifySocket,
    services: list[ServiceProcess],
) -> None:
    """With 300 overdue reminders and a slow processor, READY=1 comes after reconcile.done and first."""
    receiver.script([Reply(200, delay_s=0.05)] * 300, path="/a")
    port = free_port()
    cfg = service_config(
        tmp_path / "cfg.yaml",
        redis_url,
        receiver,
        ["a"],
        daemon={"concurrency": 10},
        metrics={"enabled": True, "port": port},
    )
    with Reminders(redis_url, load_config(cfg)) as api:
        api.schedule_many((f"send_message-{i}-down", None, When(in_=50)) for i in range(300))
        last_due = max(rem.due_at_ms for rem in api.list(limit=500))
    client = redis_server.client()
    wait_until(lambda: redis_now_ms(client) > last_due + 20, message="all 300 due")
    proc = service(cfg, notify, services, WATCHDOG_USEC="1000000").start(wait_ready=False)
    readyz: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + 60
    while not notify.with_line("READY=1"):
        assert time.monotonic() < deadline, "no READY=1 within 60 s"
        assert proc.proc is not None
        assert proc.proc.poll() is None, proc.tail()
        with contextlib.suppress(OSError):  # not listening yet
            readyz.append(http_get(f"http://127.0.0.1:{port}/readyz"))
        time.sleep(0.02)
    done = proc.find("reconcile.done")  # logged (unbuffered) before READY=1 was sent
    assert [e["recovered"] for e in done] == [300], proc.tail()
    assert (503, b'{"status":"fail","reason":"start-up sweep not finished"}') in readyz
    first = notify.messages[0]
    assert first.lines == ("READY=1", "STATUS=recovered 300, adopted 0")
    msgs = notify.wait_for(
        lambda ms: (
            any(m.field("STATUS") and not m.has("READY=1") for m in ms)
            and any(m.has("WATCHDOG=1") for m in ms)
        ),
        what="STATUS and WATCHDOG after READY",
    )
    assert msgs[0] == first  # nothing came before READY
    heartbeat_status = next(m for m in msgs if m.field("STATUS") and not m.has("READY=1"))
    assert (heartbeat_status.field("STATUS") or "").startswith("backlog ")
    assert ", fired " in (heartbeat_status.field("STATUS") or "")
    assert http_get(f"http://127.0.0.1:{port}/readyz") == (200, b'{"status":"ok"}')
    receiver.wait_for(lambda reqs: len(reqs) >= 300, timeout_s=20)


@pytest.mark.parametrize(
    ("usec", "pid_self", "low_s", "high_s"),
    [("1000000", True, 0.4, 0.65), ("400000", False, 0.85, 1.2)],
    ids=["own-pid", "other-pid"],
)
def test_watchdog_interval(
    tmp_path: Path,
    redis_url: str,
    receiver: HttpReceiver,
    notify: NotifySocket,
    services: list[ServiceProcess],
    usec: str,
    pid_self: bool,
    low_s: float,
    high_s: float,
) -> None:
    """WATCHDOG=1 comes every WATCHDOG_USEC/2 if WATCHDOG_PID is ours; another pid's timeout is ignored."""
    cfg = service_config(tmp_path / "cfg.yaml", redis_url, receiver, ["a"])
    env = {"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": usec}
    if not pid_self:
        env["WATCHDOG_PID"] = "1"
    proc = ServiceProcess(cfg, env=env, watchdog_pid_self=pid_self)
    services.append(proc)
    proc.start()
    pings = notify.wait_line("WATCHDOG=1", count=5)
    gaps = sorted(b.at_s - a.at_s for a, b in itertools.pairwise(pings))
    median = gaps[len(gaps) // 2]
    assert low_s <= median <= high_s, gaps
    if pid_self:
        assert proc.proc is not None
        assert proc.find("daemon.started")[0]["instance"].split("-")[-2] == str(proc.proc.pid)


def test_sighup_reload_keeps_old_config_when_invalid_and_applies_a_valid_one(
    tmp_path: Path,
    redis_url: str,
    receiver: HttpReceiver,
    notify: NotifySocket,
    services: list[ServiceProcess],
) -> None:
    """SIGHUP sends RELOADING=1 then READY=1; an invalid file keeps the old config, a valid one applies."""
    cfg = service_config(tmp_path / "cfg.yaml", redis_url, receiver, ["a"])
    proc = service(cfg, notify, services).start()
    notify.wait_line("READY=1")
    api = Reminders(redis_url, load_config(cfg))
    api.schedule("send_message-1-before", when=When(in_=100))
    receiver.wait_for(lambda reqs: len(reqs) >= 1)

    good = cfg.read_text()
    cfg.write_text(good.replace("- a\n", "- nope\n"))
    proc.signal(signal.SIGHUP)
    failed = proc.wait_for("config.reload_failed")[0]
    assert (
        failed["error"] == f"{cfg}: rules.send_message.processors: unknown processor 'nope' (defined: a, b)"
    )
    assert failed["level"] == "error"
    after = notify.wait_line("READY=1", count=2)[-1]
    reloading = notify.with_line("RELOADING=1")
    assert len(reloading) == 1
    assert reloading[0].at_s <= after.at_s
    assert int(reloading[0].field("MONOTONIC_USEC") or 0) > 0
    assert after.field("STATUS") == "reload failed; old configuration kept"
    api.schedule("send_message-2-kept", when=When(in_=100))
    receiver.wait_for(lambda reqs: len(reqs) >= 2)
    assert [r.json()["key"] for r in receiver.requests_for("/a")] == [
        "send_message-1-before",
        "send_message-2-kept",
    ]

    cfg.write_text(good.replace("- a\n", "- b\n"))
    proc.signal(signal.SIGHUP)
    reloaded = proc.wait_for("config.reloaded")[0]
    assert reloaded["processors"] == ["a", "b"]
    assert notify.wait_line("READY=1", count=3)[-1].field("STATUS") == "configuration reloaded"
    assert len(notify.with_line("RELOADING=1")) == 2
    api.schedule("send_message-3-new", when=When(in_=100))
    receiver.wait_for(lambda reqs: len(reqs) >= 3)
    assert [r.json()["key"] for r in receiver.requests_for("/b")] == ["send_message-3-new"]
    assert len(receiver.requests_for("/a")) == 2
    api.close()


def test_reload_of_restart_only_settings_warns_at_each_reload(
    tmp_path: Path,
    redis_url: str,
    receiver: HttpReceiver,
    notify: NotifySocket,
    services: list[ServiceProcess],
) -> None:
    """Changed metrics settings are kept as started and config.reload_partial says so at every reload."""
    cfg = service_config(tmp_path / "cfg.yaml", redis_url, receiver, ["a"])
    proc = service(cfg, notify, services).start()
    service_config(cfg, redis_url, receiver, ["b"], metrics={"enabled": True, "port": free_port()})
    for count in (1, 2):
        proc.signal(signal.SIGHUP)
        proc.wait_for("config.reloaded", count=count)
    partial = proc.find("config.reload_partial")
    assert [(e["setting"], e["note"]) for e in partial] == [("metrics", "takes effect after a restart")] * 2
    assert not proc.find("metrics.listening")


def test_waiting_for_redis_is_shown_and_sigterm_stops(
    tmp_path: Path, receiver: HttpReceiver, notify: NotifySocket, services: list[ServiceProcess]
) -> None:
    """While Redis does not answer, STATUS says so and READY never comes; SIGTERM then sends STOPPING=1."""
    port = free_port()
    cfg = service_config(tmp_path / "cfg.yaml", f"redis://127.0.0.1:{port}/0", receiver, ["a"])
    proc = service(cfg, notify, services).start(wait_ready=False)
    waiting = notify.wait_for(
        lambda ms: any((m.field("STATUS") or "").startswith("waiting for Redis: ") for m in ms),
        what="STATUS=waiting for Redis",
    )
    status = waiting[0].field("STATUS") or ""
    assert status.startswith(f"waiting for Redis: Error 111 connecting to 127.0.0.1:{port}."), status
    proc.signal(signal.SIGTERM)
    assert proc.wait_exit(20) == 0
    stopping = notify.wait_line("STOPPING=1")
    assert stopping[0].lines == ("STOPPING=1", "STATUS=stopped before Redis answered")
    assert not notify.with_line("READY=1")


def test_sigterm_sends_stopping_and_exits_0(
    tmp_path: Path,
    redis_url: str,
    receiver: HttpReceiver,
    notify: NotifySocket,
    services: list[ServiceProcess],
) -> None:
    """SIGTERM sends STOPPING=1 (status 'draining') and the daemon exits 0 after logging daemon.stopped."""
    cfg = service_config(tmp_path / "cfg.yaml", redis_url, receiver, ["a"])
    proc = service(cfg, notify, services).start()
    notify.wait_line("READY=1")
    proc.signal(signal.SIGTERM)
    assert proc.wait_exit(20) == 0
    stopping = notify.wait_line("STOPPING=1")
    assert stopping[0].lines == ("STOPPING=1", "STATUS=draining")
    assert notify.messages.index(stopping[0]) > notify.messages.index(notify.with_line("READY=1")[0])
    assert proc.find("daemon.stopped")


def run_cli(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m reminderd <args> --config cfg`` as a subprocess, with the config naming the server."""
    env = {k: v for k, v in os.environ.items() if k not in ("REMINDERD_REDIS_URL", "REMINDERD_CONFIG")}
    return subprocess.run(
        [sys.executable, "-m", "reminderd", *args, "--config", str(cfg)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
    )


@pytest.mark.slow
def test_status_exit_codes_against_a_running_daemon(
    tmp_path: Path,
    redis_url: str,
    receiver: HttpReceiver,
    notify: NotifySocket,
    services: list[ServiceProcess],
) -> None:
    """status exits 0 with a live daemon, 5 once its backlog is older than backlog_alert, 4 after it stops."""
    cfg = service_config(
        tmp_path / "cfg.yaml",
        redis_url,
        receiver,
        ["a"],
        daemon={"concurrency": 1, "backlog_alert": "1s", "drain_timeout": "1s"},
    )
    proc = service(cfg, notify, services).start()
    assert proc.proc is not None
    wait_until(lambda: run_cli(cfg, "status").returncode == 0, message="status 0 (first heartbeat)")
    human = run_cli(cfg, "status")
    assert any(re.fullmatch(r"daemons: +1 alive", line) for line in human.stdout.splitlines()), human.stdout
    assert f" pid {proc.proc.pid}, " in human.stdout
    report = json.loads(run_cli(cfg, "status", "--json").stdout)
    assert (report["exit_code"], [d["pid"] for d in report["daemons"]]) == (0, [proc.proc.pid])

    receiver.script([Reply(200, delay_s=6)], path="/a")  # holds the only slot
    with Reminders(redis_url, load_config(cfg)) as api:
        for i in range(3):
            api.schedule(f"send_message-{i}-slow", when=When(in_=50))
    receiver.wait_for(lambda reqs: len(reqs) >= 1)  # one in flight, two waiting for the only slot
    wait_until(
        lambda: json.loads(run_cli(cfg, "status", "--json").stdout)["exit_code"] == 5,
        timeout_s=5,
        message="status --json exit_code 5",
    )
    stale = run_cli(cfg, "status")
    assert stale.returncode == 5
    assert any(
        line.startswith("warning: oldest due reminder is ")
        and line.endswith("late (alert above 1s): daemons are not keeping up")
        for line in stale.stdout.splitlines()
    ), stale.stdout

    proc.signal(signal.SIGTERM)
    assert proc.wait_exit(20) == 0
    gone = run_cli(cfg, "status")
    assert gone.returncode == 4, gone.stdout + gone.stderr
    assert "warning: no live daemon: nothing fires until one runs (reminderd run)" in gone.stdout.splitlines()


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` parsed: (sample name, sorted labels) → value."""
    status, body = http_get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return samples


def test_metrics_endpoint_counts_what_happened(
    tmp_path: Path,
    redis_server: RedisServer,
    redis_url: str,
    receiver: HttpReceiver,
    notify: NotifySocket,
    services: list[ServiceProcess],
) -> None:
    """After fires, a retry, dead letters, a start-up recovery and an adoption, /metrics has exact counts."""
    port = free_port()
    cfg = service_config(
        tmp_path / "cfg.yaml",
        redis_url,
        receiver,
        ["a"],
        metrics={"enabled": True, "port": port},
        rules={"send_message": {"processors": ["a"]}, "remind": {"processors": ["b"]}},
    )
    api = Reminders(redis_url, load_config(cfg))
    api.schedule("remind-1-offline", when=When(in_=50))  # comes due while no daemon runs
    client = redis_server.client()
    client.set("send_message-9-raw", "1", px=3_600_000)  # raw SET, adopted at start-up
    wait_until(lambda: redis_now_ms(client) > api.get("remind-1-offline").due_at_ms + 20)  # type: ignore[union-attr]
    receiver.script([503, 200, 200, 200, 400, 400], path="/a")
    proc = service(cfg, notify, services).start()
    assert http_get(f"http://127.0.0.1:{port}/readyz") == (200, b'{"status":"ok"}')
    assert http_get(f"http://127.0.0.1:{port}/healthz") == (200, b'{"status":"ok"}')
    for i in range(3):
        api.schedule(f"send_message-{i}-ok", when=When(in_=100))
    proc.wait_for("reminder.fired", lambda e: e["key"].startswith("send_message-"), count=3)
    for i in range(2):
        api.schedule(f"send_message-{i}-bad", when=When(in_=100))
    proc.wait_for("reminder.dead_lettered", count=2)
    api.close()

    def settled() -> bool:
        m = scrape(port)
        return m[("reminderd_scheduled", ())] == 1 and m[("reminderd_backlog", ())] == 0

    wait_until(settled, message="scheduled/backlog gauges refreshed by the heartbeat")
    m = scrape(port)
    sm, a = ("rule", "send_message"), ("processor", "a")
    assert m[("reminderd_fired_total", (a, sm))] == 3.0
    assert m[("reminderd_failed_total", (a, sm))] == 3.0
    assert m[("reminderd_retried_total", (a, sm))] == 1.0
    assert m[("reminderd_dead_lettered_total", (sm,))] == 2.0
    assert m[("reminderd_adopted_total", (sm,))] == 1.0
    assert m[("reminderd_lateness_seconds_count", (sm,))] == 3.0
    assert m[("reminderd_processor_duration_seconds_count", (a, sm))] == 6.0
    rm = ("rule", "remind")
    assert m[("reminderd_fired_total", (("processor", "b"), rm))] == 1.0
    assert m[("reminderd_recovered_total", (rm,))] == 1.0
    assert m[("reminderd_subscriber_connected", ())] == 1.0
    assert m[("reminderd_in_flight", ())] == 0.0
    assert 0 < time.time() - m[("reminderd_last_sweep_timestamp_seconds", ())] < 10
    raw = http_get(f"http://127.0.0.1:{port}/metrics")[1].decode()
    assert 'reminderd_fired_total{processor="a",rule="send_message"} 3.0' in raw  # labels sorted
    assert 'reminderd_dead_lettered_total{rule="send_message"} 2.0' in raw
    assert proc.stop() == 0
