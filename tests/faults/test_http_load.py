"""Webhooks at the daemon's full concurrency: every reminder delivered once, none timed out.

Three daemons on one Redis at the default concurrency (1000 each), one webhook processor,
3,000 reminders due within one second: the HTTP client must neither time out requests it
has not sent (its own queue) nor send one twice.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from reminderd.api import When
from tests.daemon_proc import DaemonProcess, wait_until
from tests.faults import Tally, api, webhook_config
from tests.faults.conftest import Daemons
from tests.http_receiver import HttpReceiver, Reply

N = 3000
FULL = {"concurrency": 1000, "lease": "30s", "sweep_interval": "500ms", "heartbeat_interval": "1s"}


def start_three(
    tmp_path: Path, redis_url: str, receiver: HttpReceiver, daemons: Daemons
) -> list[DaemonProcess]:
    """Three daemons at full concurrency posting to ``receiver`` (processor ``a`` only)."""
    procs = []
    for name in ("d0", "d1", "d2"):
        cfg = webhook_config(tmp_path / f"{name}.yaml", redis_url, receiver, ("a",), daemon=FULL)
        procs.append(daemons.start(cfg, name=name, wait_ready=False))
    for proc in procs:
        proc.wait_for("daemon.started", timeout_s=30)
    return procs


def failures(procs: list[DaemonProcess]) -> list[str]:
    """The errors of every ``reminder.failed`` / ``reminder.dead_lettered`` the daemons logged."""
    events = [
        e for p in procs for e in p.read() if e.get("event") in ("reminder.failed", "reminder.dead_lettered")
    ]
    return [str(e.get("error")) for e in events]


@pytest.mark.slow
@pytest.mark.parametrize("delay_ms", [0, 300])
def test_three_daemons_at_full_concurrency_deliver_each_webhook_once(
    tmp_path: Path, redis_url: str, daemons: Daemons, delay_ms: int
) -> None:
    """3,000 webhooks due within 1 s across 3 daemons: all delivered, once each, no timeout."""
    with HttpReceiver(default=Reply(200, delay_s=delay_ms / 1000)) as receiver:
        procs = start_three(tmp_path, redis_url, receiver, daemons)
        keys = [f"send_message-{i}-load" for i in range(N)]
        with api(procs[0].config, redis_url) as r:
            r.schedule_many((k, None, When(in_=2000 + i * 1000 // N)) for i, k in enumerate(keys))
        tally = Tally(receiver).wait_covered(keys, ("/a",), 60)
        client = redis.Redis.from_url(redis_url)
        wait_until(lambda: client.zcard("reminderd:due") == 0, 30, "an empty index")
        client.close()
        tally.assert_exactly_once(keys, ("/a",))
        assert failures(procs) == []


@pytest.mark.slow
def test_a_write_pause_across_500_due_delivers_each_once(
    tmp_path: Path, redis_url: str, daemons: Daemons
) -> None:
    """A 10 s ``CLIENT PAUSE WRITE`` as 500 webhooks come due: all delivered after it, none twice."""
    with HttpReceiver() as receiver:
        cfg = webhook_config(tmp_path / "d.yaml", redis_url, receiver, ("a",), daemon=FULL)
        proc = daemons.start(cfg, name="d")
        keys = [f"send_message-{i}-pause" for i in range(500)]
        with api(cfg, redis_url) as r:
            r.schedule_many((k, None, When(in_=1500 + i)) for i, k in enumerate(keys))
        client = redis.Redis.from_url(redis_url)
        client.execute_command("CLIENT", "PAUSE", 10_000, "WRITE")
        tally = Tally(receiver).wait_covered(keys, ("/a",), 60)
        wait_until(lambda: client.zcard("reminderd:due") == 0, 30, "an empty index")
        client.close()
        tally.assert_exactly_once(keys, ("/a",))
        assert failures([proc]) == []


@pytest.mark.slow
def test_kill9_with_500_in_flight_resends_exactly_those(
    tmp_path: Path, redis_url: str, daemons: Daemons
) -> None:
    """kill -9 with 500 webhooks sent, none answered: after the restart each is sent once more, no more."""
    n = 500
    with HttpReceiver() as receiver:
        receiver.script([Reply(200, delay_s=3.0)] * n, path="/a")  # unanswered at the kill
        cfg = webhook_config(tmp_path / "d.yaml", redis_url, receiver, ("a",), daemon={**FULL, "lease": "2s"})
        first = daemons.start(cfg, name="first")
        keys = [f"send_message-{i}-kill" for i in range(n)]
        with api(cfg, redis_url) as r:
            r.schedule_many((k, None, When(in_=1000 + i)) for i, k in enumerate(keys))
        receiver.wait_for(lambda reqs: len(reqs) >= n, timeout_s=30)
        first.kill()
        restarted = daemons.start(cfg, name="restarted")
        tally = Tally(receiver)
        wait_until(lambda: sum(tally.update().calls.values()) >= 2 * n, 30, "the re-sends")
        client = redis.Redis.from_url(redis_url)
        wait_until(lambda: client.zcard("reminderd:due") == 0, 30, "an empty index")
        client.close()
        tally.update()
        assert {tally.calls[("/a", k)] for k in keys} == {2}  # the crash window, exactly: each once more
        assert all(len(tally.idempotency[k]) == 1 for k in keys)
        assert failures([restarted]) == []
