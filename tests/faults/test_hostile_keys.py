"""Hostile key names through real SET ... PX into one running daemon: generated and binary."""

from __future__ import annotations

import json
import time
import urllib.request
from functools import partial
from pathlib import Path

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from reminderd.core.pii import mask_text
from tests.daemon_proc import DaemonProcess, wait_until, write_config
from tests.faults import Tally, stream_entries, webhook_config
from tests.faults.conftest import Daemons
from tests.http_receiver import HttpReceiver
from tests.redis_server import free_port

PREFIX = "send_message"
_CONTROL = {chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))}

# Any text but lone surrogates (a Redis key is bytes; those have no UTF-8 form), with the
# characters that matter to the contract made likely.
PART = st.text(
    st.one_of(
        st.sampled_from(["-", " ", "\t", "\x1f", "\x00", "*", "?", "[", ":", "é", "💥", "\u2003", "+"]),
        st.characters(exclude_categories=["Cs"]),
    ),
    max_size=12,
)


def expected(name: str) -> tuple[str, str] | None:
    """(user id, type) the contract gives ``name``, or None if it must be rejected."""
    user, sep, type_ = name[len(PREFIX) + 1 :].rpartition("-")
    if not sep:
        return None
    for part in (user, type_):
        if not part or not part.strip("-") or part != part.strip() or any(c in _CONTROL for c in part):
            return None
    return user, type_


def rejected_again(port: int, before: float) -> bool:
    """True once one more malformed key was counted than ``before``."""
    return rejected_count(port) == before + 1


def rejected_count(port: int) -> float:
    """The daemon's ``reminderd_rejected_keys`` counter for malformed keys, from /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "reminderd_rejected_keys_total" and s.labels.get("reason") == "malformed":
                return float(s.value)
    return 0.0


def expire_now(client: redis.Redis, name: str | bytes, px: int = 30) -> None:
    """SET the key with a short PX, then touch it until Redis expires it (and emits the event)."""
    client.set(name, "1", px=px)
    deadline = time.monotonic() + 5
    while client.exists(name) and time.monotonic() < deadline:
        time.sleep(0.01)


def rejections(d: DaemonProcess) -> list[str]:
    """Keys the daemon logged as rejected, in order.

    Read here by bytes: ``str.splitlines`` (used by the harness) also splits at NEL,
    U+2028 and friends, which a JSON line may carry unescaped inside a key name.
    """
    events = (json.loads(line) for line in d.log_path.read_bytes().split(b"\n") if line.startswith(b"{"))
    return [str(e["key"]) for e in events if e.get("event") == "key.rejected"]


def streamed(client: redis.Redis) -> dict[str, list[dict[str, str]]]:
    """Entries of the ``faults:out`` stream by trigger key."""
    found: dict[str, list[dict[str, str]]] = {}
    for fields in stream_entries(client, "faults:out"):
        found.setdefault(fields["key"], []).append(fields)
    return found


@pytest.mark.slow
def test_generated_and_binary_key_names(tmp_path: Path, redis_url: str, daemons: Daemons) -> None:
    """Keys that parse fire once with the right user and type; the rest are logged, counted, survived."""
    port = free_port()
    # A stream processor records what fired: the loopback receiver is too slow for many keys.
    cfg = write_config(
        tmp_path / "cfg.yaml",
        redis_url,
        processors={"s": {"type": "stream", "stream": "faults:out"}},
        rules={PREFIX: {"processors": ["s"]}},
        metrics={"enabled": True, "port": port},
    )
    d = daemons.start(cfg)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    raw_client = redis.Redis.from_url(redis_url)
    fired: dict[str, tuple[str, str]] = {}

    @settings(max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(user=PART, type_=PART)
    def one_key(user: str, type_: str) -> None:
        name = f"{PREFIX}-{user}-{type_}"
        want = expected(name)
        before = rejected_count(port)
        client.delete(f"reminderd:fired:{name}")  # a replayed example is a new reminder, not a late event
        fired_before = len(streamed(client).get(name, []))
        expire_now(client, name)
        if want is None:
            wait_until(lambda: rejected_count(port) == before + 1, 5, f"rejection of {name!r}")
            wait_until(lambda: mask_text(name) in rejections(d), 5, f"key.rejected log of {name!r}")
        else:
            wait_until(lambda: len(streamed(client).get(name, [])) > fired_before, 5, f"firing of {name!r}")
            fired[name] = want

    one_key()
    for raw in (b"send_message-\xff\xfe-bin", b"send_message-42-\xc3", b"send_message-\x80abc-x"):
        before = rejected_count(port)
        expire_now(raw_client, raw)
        wait_until(partial(rejected_again, port, before), 5, f"rejection of {raw!r}")
    expire_now(client, "send_message-still-alive")
    fired["send_message-still-alive"] = ("still", "alive")
    wait_until(lambda: set(fired) <= set(streamed(client)), 10, "every valid key fired")
    entries = streamed(client)
    assert {k: len(entries[k]) for k in fired} == dict.fromkeys(fired, 1)
    assert {k: (entries[k][0]["user_id"], entries[k][0]["type"]) for k in fired} == fired
    assert set(entries) == set(fired)
    assert d.proc is not None
    assert d.proc.poll() is None
    client.close()
    raw_client.close()


@pytest.mark.slow
def test_webhook_delivers_a_key_with_a_non_ascii_user_id(
    tmp_path: Path, redis_url: str, receiver: HttpReceiver, daemons: Daemons
) -> None:
    """A valid raw key whose user id is not ASCII reaches the webhook once, its header percent-encoded."""
    cfg = webhook_config(tmp_path / "cfg.yaml", redis_url, receiver, processors=("a",))
    daemons.start(cfg)
    client = redis.Redis.from_url(redis_url)
    expire_now(client, "send_message-José-welcome")
    Tally(receiver).wait_covered(["send_message-José-welcome"], ("/a",), 5)
    header = receiver.requests_for("/a")[0].headers["idempotency-key"]
    assert header.startswith("send_message-Jos%C3%A9-welcome:1:")
    client.close()
