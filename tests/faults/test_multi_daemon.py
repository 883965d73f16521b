"""Several daemons on one Redis, one of them killed mid-run."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import redis

from reminderd.api import When
from tests.daemon_proc import wait_until
from tests.faults import Tally, api, complete, trigger_key, webhook_config
from tests.faults.conftest import Daemons
from tests.http_receiver import HttpReceiver

N = 1000


@pytest.mark.slow
def test_three_daemons_one_killed_mid_run(
    tmp_path: Path, redis_url: str, receiver: HttpReceiver, daemons: Daemons
) -> None:
    """Three daemons, 1 000 reminders due within 1 s, one killed: all fire; its unfinished calls re-run."""
    names = ("d0", "d1", "d2")
    cfgs = {
        name: webhook_config(
            tmp_path / f"{name}.yaml",
            redis_url,
            receiver,
            processor_options={p: {"headers": {"X-Instance": name}} for p in ("a", "b")},
        )
        for name in names
    }
    procs = {name: daemons.start(cfg, name=name, wait_ready=False) for name, cfg in cfgs.items()}
    for proc in procs.values():
        proc.wait_for("daemon.started", timeout_s=30)
    keys = [f"send_message-{i}-multi" for i in range(N)]
    with api(cfgs["d0"], redis_url) as r:
        r.schedule_many((k, None, When(in_=1000 + i)) for i, k in enumerate(keys))
    receiver.wait_for(
        lambda reqs: sum(q.headers.get("x-instance") == "d0" for q in reqs) >= 100, timeout_s=20
    )
    procs["d0"].kill()
    tally = Tally(receiver).wait_covered(keys, ("/a", "/b"), 60)
    client = redis.Redis.from_url(redis_url)
    wait_until(lambda: client.zcard("reminderd:due") == 0, 15, "an empty index")
    client.close()
    tally.update()
    by_sender: dict[tuple[str, str], Counter[str]] = {}
    for q in filter(complete, receiver.requests):
        by_sender.setdefault((q.path, trigger_key(q)), Counter())[q.headers["x-instance"]] += 1
    reruns = {pair: senders for pair, senders in by_sender.items() if sum(senders.values()) > 1}
    for pair, senders in by_sender.items():
        survivors = senders["d1"] + senders["d2"]
        assert survivors <= 1, (pair, senders)
        assert senders["d0"] <= 1, (pair, senders)
    for pair, senders in reruns.items():
        assert senders["d0"] == 1, (pair, senders)  # only what the killed daemon had not finished
    assert len(reruns) <= 2 * 16  # at most its in-flight occurrences (concurrency 16), both processors
    assert all(len(tally.idempotency[k]) == 1 for k in keys)
    assert set(tally.calls) == {(p, k) for k in keys for p in ("/a", "/b")}
