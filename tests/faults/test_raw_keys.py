"""Raw trigger keys as producers write them: forged events, re-sets, refreshes, cancels, least privilege."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import pytest
import redis

from tests.daemon_proc import DaemonProcess, wait_until
from tests.faults import Tally, stream_entries, webhook_config
from tests.faults.conftest import Daemons, Servers
from tests.http_receiver import HttpReceiver

# The producer of README's least-privilege section: its rule's trigger keys, nothing else.
PRODUCER_ACL = (
    "on >producer-secret resetchannels ~send_message-* "
    "+set +setex +psetex +expire +pexpire +expireat +pexpireat +persist +del +unlink +get +pttl +ttl +exists"
)
# The daemon's user of the same section (namespace reminderd, rule send_message, db 0); Redis
# checks a PSUBSCRIBE pattern literally against the channel rules, so each is spelt out.
DAEMON_ACL = (
    "on >daemon-secret ~send_message-* ~reminderd:* &__keyspace@0__:send_message-* "
    "&__keyevent@0__:expired "
    "&reminderd:wake +@read +@write +@scripting +@pubsub +@keyspace +@connection +@transaction "
    "+info +time +config|get +config|set"
)


def calls(tally: Tally, key: str) -> int:
    """How many calls the receiver got for ``key`` (the one processor /a)."""
    return tally.update().calls[("/a", key)]


def indexed(client: redis.Redis, key: str) -> bool:
    """Whether ``key`` is in the due index."""
    return client.zscore("reminderd:due", key) is not None


def raw_daemon(
    tmp_path: Path, url: str, receiver: HttpReceiver, daemons: Daemons, *, scan: str = "1h", **rule: str
) -> DaemonProcess:
    """A daemon whose rule send_message posts to /a, with ``rule``'s extra settings and an
    adoption scan every ``scan`` (by default none during the test: events alone must do)."""
    rules = {"send_message": {"processors": ["a"], **rule}}
    cfg = webhook_config(tmp_path / "cfg.yaml", url, receiver, processors=("a",), rules=rules,
                         daemon={"adoption_interval": scan})  # fmt: skip
    return daemons.start(cfg)


@pytest.mark.slow
def test_forged_events_fire_nothing_early_and_nothing_unseen_under_never(
    tmp_path: Path, redis_url: str, receiver: HttpReceiver, daemons: Daemons
) -> None:
    """Forged expired events: a live raw key is neither fired nor deleted; a missing one (never) is lost."""
    d = raw_daemon(tmp_path, redis_url, receiver, daemons, unseen_raw="never")
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    live, missing = "send_message-7-live", "send_message-666-forged"
    client.set(live, "1", ex=600)
    wait_until(lambda: indexed(client, live), 10, "the live key adopted at write time")
    for key in (live, missing):
        client.publish("__keyevent@0__:expired", key)
        client.publish(f"__keyspace@0__:{key}", "expired")
    d.wait_for("reminder.lost", lambda e: e["key"] == missing, timeout_s=10)
    tally = Tally(receiver)
    assert (calls(tally, live), calls(tally, missing)) == (0, 0)
    assert 590_000 < int(client.pttl(live)) <= 600_000  # type: ignore[arg-type]
    assert int(client.zscore("reminderd:due", live) or 0) == client.pexpiretime(live)
    client.close()


@pytest.mark.slow
def test_a_raw_key_set_again_right_after_it_fired_fires_again(
    tmp_path: Path, redis_url: str, receiver: HttpReceiver, daemons: Daemons
) -> None:
    """The seed re-arm pattern: a raw key written again as soon as it fired is a new reminder and fires."""
    raw_daemon(tmp_path, redis_url, receiver, daemons)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    key = "send_message-9-rearm"
    tally = Tally(receiver)
    client.set(key, "1", px=500)
    wait_until(lambda: calls(tally, key) == 1, 10, "the first fire")
    client.set(key, "1", px=500)
    wait_until(lambda: calls(tally, key) == 2, 10, "the second fire")
    wait_until(lambda: not indexed(client, key), 5, "an empty index")
    assert len(tally.update().idempotency[key]) == 2
    client.close()


@pytest.mark.slow
def test_a_refreshed_raw_key_fires_once_one_ttl_after_the_last_refresh(
    tmp_path: Path, redis_url: str, receiver: HttpReceiver, daemons: Daemons
) -> None:
    """The timeout pattern: EXPIRE 6 every 2 s for 20 s neither fires nor deletes it; it fires ~6 s after."""
    raw_daemon(tmp_path, redis_url, receiver, daemons, scan="1s")  # the scan adopts it early, too
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    key = "send_message-dev1-offline"
    tally = Tally(receiver)
    client.set(key, "1", ex=6)
    refresh_ends = time.monotonic() + 20
    while time.monotonic() < refresh_ends:
        time.sleep(2)  # the producer's own rhythm: a refresh every 2 s
        assert client.expire(key, 6), "the key was deleted while it was refreshed"
        assert calls(tally, key) == 0
    last = time.monotonic()
    wait_until(lambda: calls(tally, key) == 1, 15, "the fire after the refreshes stopped")
    assert 5.0 < time.monotonic() - last < 8.0
    time.sleep(1)  # nothing may follow: a second fire would come at once
    assert calls(tally, key) == 1
    client.close()


@pytest.mark.slow
def test_persist_and_del_of_adopted_raw_keys_fire_nothing(
    tmp_path: Path, redis_url: str, receiver: HttpReceiver, daemons: Daemons
) -> None:
    """The checkout pattern: an adopted raw key deleted (paid) or made persistent never fires."""
    d = raw_daemon(tmp_path, redis_url, receiver, daemons)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    paid, kept, unpaid = "send_message-1-order", "send_message-2-kept", "send_message-3-unpaid"
    for key in (paid, kept, unpaid):
        client.set(key, "1", px=2500)
    wait_until(lambda: all(indexed(client, k) for k in (paid, kept, unpaid)), 10, "all three adopted")
    client.delete(paid)
    client.persist(kept)
    tally = Tally(receiver).wait_covered([unpaid], ["/a"], 15)
    wait_until(lambda: client.zcard("reminderd:due") == 0, 10, "an empty index")
    assert (calls(tally, paid), calls(tally, kept)) == (0, 0)
    assert client.get(kept) == "1"
    assert d.find("reminder.cancelled", lambda e: e["key"] == paid)
    assert d.find("reminder.withdrawn", lambda e: e["key"] == kept)
    client.close()


@pytest.mark.slow
def test_raw_burst_while_the_subscriber_is_cut_loses_nothing(
    tmp_path: Path, servers: Servers, receiver: HttpReceiver, daemons: Daemons
) -> None:
    """Raw keys written while the subscriber is cut by the pubsub buffer limit are adopted by a full pass."""
    server = servers.start("--client-output-buffer-limit", "pubsub 64kb 32kb 5")
    cfg = webhook_config(
        tmp_path / "cfg.yaml",
        server.url,
        receiver,
        processors=("a",),
        daemon={"adoption_interval": "1h", "concurrency": 64},
        extra_processors={"s": {"type": "stream", "stream": "faults:out"}},
        rules={"send_message": {"processors": ["a"]}, "burst": {"processors": ["s"]}},
    )
    d = daemons.start(cfg)
    admin = server.client(decode_responses=True)
    pad = "u" * 200  # long names: the burst's events overflow the socket buffers and the 64 kB limit
    keys = [f"burst-{pad}{i}-raw" for i in range(20_000)]
    d.signal(signal.SIGSTOP)
    try:
        with admin.pipeline(transaction=False) as pipe:
            for k in keys:
                pipe.set(k, "1", px=12_000)
            pipe.execute()
        redis_log = server.dir / "redis.log"
        wait_until(lambda: "output buffer limits" in redis_log.read_text(), 10, "the subscriber cut off")
    finally:
        d.signal(signal.SIGCONT)
    d.wait_for("adoption.done", lambda e: e["reason"] == "gap", timeout_s=20)
    wait_until(lambda: admin.xlen("faults:out") >= len(keys), 40, "every raw key fired")
    wait_until(lambda: admin.zcard("reminderd:due") == 0, 10, "an empty index")
    assert Counter(fields["key"] for fields in stream_entries(admin, "faults:out")) == Counter(keys)
    admin.close()


@pytest.mark.slow
def test_thousand_raw_keys_written_while_no_daemon_runs_fire_once(
    tmp_path: Path, redis_url: str, receiver: HttpReceiver, daemons: Daemons
) -> None:
    """1 000 raw keys written while every daemon is down, due after one starts, each fire exactly once."""
    first = raw_daemon(tmp_path, redis_url, receiver, daemons)
    assert first.stop() == 0
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    keys = [f"send_message-{i}-downraw" for i in range(1000)]
    with client.pipeline(transaction=False) as pipe:
        for i, k in enumerate(keys):
            pipe.set(k, "1", px=6000 + i)
        pipe.execute()
    after = daemons.start(first.config, name="after")
    assert after.wait_for("daemon.started")[0]["adopted"] == 1000
    tally = Tally(receiver).wait_covered(keys, ("/a",), 40)
    wait_until(lambda: client.zcard("reminderd:due") == 0, 10, "an empty index")
    tally.assert_exactly_once(keys, ("/a",))
    client.close()


@pytest.mark.slow
def test_least_privilege_users_refuse_forgery_and_serve_reminders(
    tmp_path: Path, servers: Servers, receiver: HttpReceiver, daemons: Daemons
) -> None:
    """Under README's producer user Redis refuses a forged PUBLISH; the daemon's user serves raw keys."""
    server = servers.start()
    admin = server.client(decode_responses=True)
    admin.acl_setuser("producer", reset=True)
    admin.execute_command("ACL", "SETUSER", "producer", *PRODUCER_ACL.split())
    admin.execute_command("ACL", "SETUSER", "reminderd", *DAEMON_ACL.split())
    url = server.url.replace("redis://", "redis://reminderd:daemon-secret@")
    raw_daemon(tmp_path, url, receiver, daemons)
    producer = redis.Redis(port=server.port, username="producer", password="producer-secret")
    with pytest.raises(redis.exceptions.NoPermissionError):
        producer.publish("__keyevent@0__:expired", "send_message-666-forged")
    with pytest.raises(redis.exceptions.NoPermissionError):
        producer.zrange("reminderd:due", 0, -1)
    producer.set("send_message-5-acl", "1", px=800)
    Tally(receiver).wait_covered(["send_message-5-acl"], ["/a"], 15)
    producer.close()
    admin.close()
