"""A daemon stopped (SIGSTOP) longer than its lease: the crash window by another name.

Another instance takes over and sends again what the stopped one had in flight (same
``Idempotency-Key``); the resumed one notices its leases lapsed and drops its verdicts
instead of racing the new owner.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import redis

from reminderd.api import When
from tests.daemon_proc import wait_until
from tests.faults import Tally, api, webhook_config
from tests.faults.conftest import Daemons
from tests.http_receiver import HttpReceiver, Reply

N = 20


@pytest.mark.slow
def test_a_daemon_paused_past_its_lease_drops_its_verdicts_to_the_new_owner(
    tmp_path: Path, redis_url: str, receiver: HttpReceiver, daemons: Daemons
) -> None:
    """20 in flight at a SIGSTOP: the other daemon re-sends all 20 once; the resumed one fires none."""
    cfg = webhook_config(tmp_path / "cfg.yaml", redis_url, receiver, ("a",), daemon={"concurrency": 100})
    receiver.script([Reply(200, delay_s=1.0)] * N, path="/a")  # the stopped daemon's calls
    paused = daemons.start(cfg, name="paused")
    keys = [f"send_message-{i}-pause" for i in range(N)]
    with api(cfg, redis_url) as r:
        r.schedule_many((k, None, When(in_=500)) for k in keys)
    receiver.wait_for(lambda reqs: len(reqs) >= N, timeout_s=15)
    paused.signal(signal.SIGSTOP)
    other = daemons.start(cfg, name="other")
    tally = Tally(receiver)
    wait_until(lambda: sum(tally.update().calls.values()) >= 2 * N, 20, "the take-over's calls")
    client = redis.Redis.from_url(redis_url)
    wait_until(lambda: client.zcard("reminderd:due") == 0, 15, "an empty index")
    client.close()
    other.wait_for("reminder.fired", count=N, timeout_s=10)
    paused.signal(signal.SIGCONT)
    lost = paused.wait_for("lease.lost", count=N, timeout_s=15)
    assert sorted(e["key"] for e in lost) == sorted(keys)
    assert paused.find("lease.lapsed")
    assert paused.find("reminder.fired") == []
    assert all(tally.calls[("/a", k)] == 2 for k in keys)  # the crash window: each in-flight call twice
    assert all(len(tally.idempotency[k]) == 1 for k in keys)
