"""Downtime and shutdown: what comes due while no daemon runs, and SIGTERM with work in flight."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import redis

from reminderd.api import When
from tests.daemon_proc import wait_until
from tests.faults import Tally, api, redis_now_ms, webhook_config
from tests.faults.conftest import Daemons
from tests.http_receiver import HttpReceiver, Reply


@pytest.mark.slow
def test_thousand_due_while_stopped_fire_once_after_start(
    tmp_path: Path, redis_url: str, receiver: HttpReceiver, daemons: Daemons
) -> None:
    """1 000 reminders due while the daemon is stopped fire exactly once per processor after it starts."""
    cfg = webhook_config(tmp_path / "cfg.yaml", redis_url, receiver, daemon={"concurrency": 16})
    assert daemons.start(cfg, name="before").stop() == 0
    keys = [f"send_message-{i}-down" for i in range(1000)]
    with api(cfg, redis_url) as r:
        assert r.schedule_many((k, {"i": i}, When(in_=100 + i % 200)) for i, k in enumerate(keys)) == 1000
        last_due = max(rem.due_at_ms for rem in r.list(limit=2000))
    client = redis.Redis.from_url(redis_url)
    wait_until(lambda: redis_now_ms(client) > last_due + 20, 10, "all 1 000 due")
    after = daemons.start(cfg, name="after")
    assert after.wait_for("daemon.started")[0]["recovered"] == 1000
    tally = Tally(receiver).wait_covered(keys, ("/a", "/b"), 60)
    wait_until(lambda: client.zcard("reminderd:due") == 0, 10, "an empty index")
    tally.assert_exactly_once(keys, ("/a", "/b"))
    client.close()


@pytest.mark.slow
def test_sigterm_with_work_in_flight_drains_and_loses_nothing(
    tmp_path: Path, redis_url: str, daemons: Daemons
) -> None:
    """SIGTERM with calls in flight finishes them and exits 0; a later daemon fires the rest, none twice."""
    keys = [f"send_message-{i}-term" for i in range(60)]
    with HttpReceiver(default=Reply(200, delay_s=0.3)) as receiver:
        cfg = webhook_config(tmp_path / "cfg.yaml", redis_url, receiver, daemon={"concurrency": 8})
        first = daemons.start(cfg, name="first")
        with api(cfg, redis_url) as r:
            r.schedule_many((k, None, When(in_=200)) for k in keys)
        receiver.wait_for(lambda reqs: len(reqs) >= 8, timeout_s=10)
        first.signal(signal.SIGTERM)
        assert first.wait_exit(30) == 0
        stopping = first.wait_for("daemon.stopping")[0]
        assert stopping["in_flight"] > 0
        assert first.wait_for("daemon.stopped")[0]["unfinished"] == 0
        fired_before = len(first.find("reminder.fired"))
        assert 0 < fired_before < len(keys)
        daemons.start(cfg, name="second")
        tally = Tally(receiver).wait_covered(keys, ("/a", "/b"), 30)
        client = redis.Redis.from_url(redis_url)
        wait_until(lambda: client.zcard("reminderd:due") == 0, 10, "an empty index")
        client.close()
        tally.assert_exactly_once(keys, ("/a", "/b"))
