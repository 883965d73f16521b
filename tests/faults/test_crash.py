"""kill -9 in the middle of processing: only what had not finished runs again, same key."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from reminderd.api import When
from tests.daemon_proc import wait_until
from tests.faults import api, idempotency_keys, per_processor, webhook_config
from tests.faults.conftest import Daemons
from tests.http_receiver import HttpReceiver, Reply

KEY = "send_message-1-crash"


@pytest.mark.slow
def test_kill9_mid_call_reruns_only_the_unfinished_processor(
    tmp_path: Path, redis_url: str, receiver: HttpReceiver, daemons: Daemons
) -> None:
    """A daemon killed while /b is held: only /b runs again, on a new instance after the lease, same key."""
    cfg = webhook_config(tmp_path / "cfg.yaml", redis_url, receiver)
    receiver.script([Reply(200, delay_s=4.0)], path="/b")  # the first /b call hangs past the kill
    first = daemons.start(cfg, name="first")
    with api(cfg, redis_url) as r:
        r.schedule(KEY, when=When(in_=200))
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    receiver.wait_for(lambda reqs: {q.path for q in reqs} >= {"/a", "/b"}, timeout_s=10)
    wait_until(lambda: client.hget(f"reminderd:r:{KEY}", "f") == "a", 5, "processor a recorded as done")
    first.kill()
    killed_at_s = time.time()
    daemons.start(cfg, name="second")
    receiver.wait_for(lambda reqs: len([q for q in reqs if q.path == "/b"]) >= 2, timeout_s=15)
    wait_until(lambda: not client.exists(f"reminderd:r:{KEY}"), 10, "the occurrence completed")
    assert per_processor(receiver.requests) == {("/a", KEY): 1, ("/b", KEY): 2}
    assert len(idempotency_keys(receiver.requests)[KEY]) == 1
    rerun = receiver.requests_for("/b")[1]
    # The lease (2 s) was renewed every ~0.7 s while the first daemon lived, so the
    # re-run cannot start much before 2 s - 0.7 s after the kill.
    assert rerun.received_at_s - killed_at_s > 1.0
    assert rerun.json()["attempt"] == 1
    client.close()


@pytest.mark.slow
def test_kill9_right_after_a_successful_call_reruns_it_at_most_once(
    tmp_path: Path, redis_url: str, receiver: HttpReceiver, daemons: Daemons
) -> None:
    """A daemon killed the instant its only processor was called re-runs that call at most once, same key."""
    cfg = webhook_config(tmp_path / "cfg.yaml", redis_url, receiver, processors=("a",))
    first = daemons.start(cfg, name="first")
    with api(cfg, redis_url) as r:
        r.schedule(KEY, when=When(in_=200))
        deadline = time.monotonic() + 10
        while not receiver.requests and time.monotonic() < deadline:
            pass  # spin, not sleep: the kill must land between the 200 and the completion step
        first.kill()
        assert receiver.requests, "the processor was never called"
        daemons.start(cfg, name="second")
        wait_until(lambda: r.get(KEY) is None, 15, "the occurrence completed")
    calls = per_processor(receiver.requests)[("/a", KEY)]
    assert calls in (1, 2)
    assert len(idempotency_keys(receiver.requests)[KEY]) == 1
