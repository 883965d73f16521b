"""Fault-injection suite: real redis-servers, real daemon subprocesses, real faults.

Shared helpers live here so every test module reads the same way: a webhook config
whose processors post to a loopback ``HttpReceiver`` (the request path names the
processor), the Python API on the test's Redis, and counters of what the receiver got
per (processor path, trigger key).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import redis

from reminderd.api import Reminders
from reminderd.config import load_config
from tests.daemon_proc import write_config
from tests.http_receiver import HttpReceiver, Request

FAST_DAEMON: dict[str, Any] = {
    "sweep_interval": "300ms",
    "heartbeat_interval": "500ms",
    "lease": "2s",
    "concurrency": 16,
}


def webhook_config(
    path: Path,
    redis_url: str,
    receiver: HttpReceiver,
    processors: Iterable[str] = ("a", "b"),
    *,
    daemon: Mapping[str, Any] | None = None,
    processor_options: Mapping[str, Mapping[str, Any]] | None = None,
    **sections: Any,
) -> Path:
    """Config with one webhook processor per name (posting to ``/<name>``) on ``send_message``."""
    names = list(processors)
    options = processor_options or {}
    procs: dict[str, Any] = {
        name: {"type": "webhook", "url": receiver.url(f"/{name}"), "timeout": "10s", **options.get(name, {})}
        for name in names
    }
    sections.setdefault("retry", {"max_attempts": 3, "backoff": "200ms", "backoff_max": "1s"})
    return write_config(
        path,
        redis_url,
        processors={**procs, **sections.pop("extra_processors", {})},
        rules=sections.pop("rules", {"send_message": {"processors": names}}),
        daemon={**FAST_DAEMON, **(daemon or {})},
        **sections,
    )


def api(cfg: Path, redis_url: str) -> Reminders:
    """The sync Python API on the test's Redis, with the daemon's settings."""
    return Reminders(redis_url, load_config(cfg))


def trigger_key(request: Request) -> str:
    """The trigger key of a webhook request (from the body: a header cannot carry every byte)."""
    return str(request.json()["key"])


def idempotency_key(request: Request) -> str:
    """The idempotency key the webhook sent, from the body (always UTF-8 JSON)."""
    return str(request.json()["idempotency_key"])


def complete(request: Request) -> bool:
    """False for a request whose body a killed sender never finished (no parseable JSON)."""
    try:
        request.json()
    except ValueError:
        return False
    return True


class Tally:
    """What the receiver got, per (processor path, trigger key), parsed incrementally.

    Polling re-parses only new requests: parsing thousands of bodies every few
    milliseconds would starve the receiver's own threads of the GIL.
    """

    def __init__(self, receiver: HttpReceiver) -> None:
        self.receiver = receiver
        self.calls: Counter[tuple[str, str]] = Counter()
        self.idempotency: dict[str, set[str]] = {}
        self.truncated = 0  # requests cut short by a kill: never delivered, not counted
        self._seen = 0

    def update(self) -> Tally:
        """Take in the requests received since the last update."""
        fresh = self.receiver.requests[self._seen :]
        self._seen += len(fresh)
        for r in fresh:
            if not complete(r):
                self.truncated += 1
                continue
            body = r.json()
            key = str(body["key"])
            self.calls[(r.path, key)] += 1
            self.idempotency.setdefault(key, set()).add(str(body["idempotency_key"]))
        return self

    def covered(self, keys: Iterable[str], paths: Iterable[str]) -> bool:
        """True once every key has reached every path at least once."""
        self.update()
        return all((p, k) in self.calls for k in keys for p in paths)

    def wait_covered(self, keys: Iterable[str], paths: Iterable[str], timeout_s: float) -> Tally:
        """Poll (every 50 ms) until every key reached every path; fail with what is missing."""
        wanted = [(p, k) for k in keys for p in paths]
        deadline = time.monotonic() + timeout_s
        while True:
            self.update()
            missing = [pair for pair in wanted if pair not in self.calls]
            if not missing:
                return self
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(missing)} call(s) missing after {timeout_s}s, e.g. {missing[:5]}")
            time.sleep(0.05)

    def assert_exactly_once(self, keys: Iterable[str], paths: Iterable[str]) -> None:
        """Every key reached every path exactly once with one idempotency key, and nothing else ran."""
        self.update()
        keys = list(keys)
        wanted = Counter({(p, k): 1 for k in keys for p in paths})
        missing = [pair for pair in wanted if pair not in self.calls]
        wrong = {pair: n for pair, n in self.calls.items() if n != wanted.get(pair)}
        assert not missing, f"{len(missing)} call(s) never made, e.g. {missing[:5]}"
        assert not wrong, f"{len(wrong)} pair(s) called a wrong number of times: {list(wrong.items())[:5]}"
        assert all(len(self.idempotency[k]) == 1 for k in keys)


def per_processor(requests: Iterable[Request]) -> Counter[tuple[str, str]]:
    """How many calls each (processor path, trigger key) pair received."""
    return Counter((r.path, trigger_key(r)) for r in requests if complete(r))


def idempotency_keys(requests: Iterable[Request]) -> dict[str, set[str]]:
    """Every idempotency key seen per trigger key (one per occurrence, whatever the retries)."""
    found: dict[str, set[str]] = {}
    for r in filter(complete, requests):
        found.setdefault(trigger_key(r), set()).add(idempotency_key(r))
    return found


def redis_now_ms(client: redis.Redis) -> int:
    """Redis's clock in epoch milliseconds."""
    sec, usec = client.time()
    return int(sec) * 1000 + int(usec) // 1000


def stream_entries(client: redis.Redis, stream: str) -> list[dict[str, str]]:
    """Every entry of ``stream``, fields decoded (what a stream processor wrote)."""
    rows: Any = client.xrange(stream)
    return [
        {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in f.items()
        }
        for _, f in rows
    ]
