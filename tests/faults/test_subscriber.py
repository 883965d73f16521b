"""The subscriber connection lost: killed repeatedly, or cut by Redis for being too slow."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import pytest
import redis

from reminderd.api import When
from tests.daemon_proc import DaemonProcess, Event, wait_until
from tests.faults import Tally, api, stream_entries, webhook_config
from tests.faults.conftest import Daemons, Servers
from tests.http_receiver import HttpReceiver


def lost_subscriber(d: DaemonProcess) -> list[Event]:
    """The log lines that tell of a lost subscriber connection."""
    return d.find("redis.resubscribed") + d.find("redis.subscriber_disconnected")


def volatile_keys(client: redis.Redis) -> int:
    """How many keys of db 0 carry an expiry."""
    return int(client.info("keyspace").get("db0", {}).get("expires", 0))


@pytest.mark.slow
def test_subscriber_killed_repeatedly_loses_nothing(
    tmp_path: Path, redis_url: str, receiver: HttpReceiver, daemons: Daemons
) -> None:
    """CLIENT KILL TYPE pubsub every 200 ms while reminders come due: each fires once; the log says so."""
    cfg = webhook_config(tmp_path / "cfg.yaml", redis_url, receiver, daemon={"adoption_interval": "300ms"})
    d = daemons.start(cfg)
    admin = redis.Redis.from_url(redis_url)
    api_keys = [f"send_message-{i}-sub" for i in range(80)]
    raw_keys = [f"send_message-{i}-rawsub" for i in range(20)]
    with api(cfg, redis_url) as r:
        r.schedule_many((k, None, When(in_=300 + i * 40)) for i, k in enumerate(api_keys))
    for i, k in enumerate(raw_keys):
        admin.set(k, "1", px=1500 + i * 100)  # long enough for the adoption scan to see it first
    kills = 0
    fault_ends = time.monotonic() + 4.0
    while time.monotonic() < fault_ends:
        kills += int(admin.client_kill_filter(_type="pubsub"))
        time.sleep(0.2)  # the fault's own rhythm: one kill every 200 ms
    assert kills > 0
    tally = Tally(receiver).wait_covered(api_keys + raw_keys, ("/a", "/b"), 20)
    wait_until(lambda: admin.zcard("reminderd:due") == 0, 10, "an empty index")
    tally.assert_exactly_once(api_keys + raw_keys, ("/a", "/b"))
    wait_until(lambda: bool(lost_subscriber(d)), 5, "the log telling of the lost subscriber")
    admin.close()


@pytest.mark.slow
def test_slow_subscriber_cut_by_output_buffer_limit_loses_nothing_adopted(
    tmp_path: Path, servers: Servers, receiver: HttpReceiver, daemons: Daemons
) -> None:
    """A SIGSTOPped daemon cut off by the pubsub buffer limit: every adopted key still fires once."""
    server = servers.start("--client-output-buffer-limit", "pubsub 64kb 32kb 5")
    # 5 000 webhook calls would take the loopback receiver half a minute, so the raw keys
    # use a rule whose processor appends to a Redis Stream; the API keys post to /a.
    cfg = webhook_config(
        tmp_path / "cfg.yaml",
        server.url,
        receiver,
        processors=("a",),
        daemon={"adoption_interval": "200ms", "adoption_batch": 100_000, "concurrency": 64},
        extra_processors={"s": {"type": "stream", "stream": "faults:out"}},
        rules={"send_message": {"processors": ["a"]}, "burst": {"processors": ["s"]}},
    )
    d = daemons.start(cfg)
    admin = server.client(decode_responses=True)
    pad = "u" * 60  # long names: 5 000 expired events overflow the socket buffers and the 64 kB limit
    raw_keys = [f"burst-{pad}{i}-raw" for i in range(5000)]
    api_keys = [f"send_message-{pad}{i}-api" for i in range(200)]
    with admin.pipeline(transaction=False) as pipe:
        for k in raw_keys:
            pipe.set(k, "1", px=4000)
        pipe.execute()
    with api(cfg, server.url) as r:
        r.schedule_many((k, None, When(in_=3000)) for k in api_keys)
    wait_until(lambda: admin.zcard("reminderd:due") == 5200, 10, "every raw key adopted into the index")
    d.signal(signal.SIGSTOP)
    try:
        wait_until(lambda: volatile_keys(admin) < 10, 15, "the trigger keys expired")
        redis_log = server.dir / "redis.log"
        wait_until(lambda: "output buffer limits" in redis_log.read_text(), 10, "the subscriber cut off")
    finally:
        d.signal(signal.SIGCONT)
    tally = Tally(receiver).wait_covered(api_keys, ("/a",), 30)
    wait_until(lambda: admin.zcard("reminderd:due") == 0, 30, "an empty index")
    tally.assert_exactly_once(api_keys, ("/a",))
    streamed = Counter(fields["key"] for fields in stream_entries(admin, "faults:out"))
    assert streamed == Counter(raw_keys)
    wait_until(lambda: bool(lost_subscriber(d)), 5, "the log telling of the lost subscriber")
    admin.close()
