"""Prometheus metrics and the health endpoints.

Metrics live in a private ``CollectorRegistry``: the global default would make two
``Metrics`` (tests, or an app embedding reminderd) collide on duplicate names. Label
values are rule names, processor names and rejection reasons, all bounded by the config
or by code, never user ids or keys, so cardinality stays small.

The HTTP endpoint runs ``ThreadingHTTPServer`` in a daemon thread on purpose: a scrape
or a health probe must still be answered when the event loop is stuck, since telling
that the loop is stuck is what ``/healthz`` is for.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

log = structlog.get_logger(__name__)

LATENESS_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """Every reminderd metric, with one small method per thing that happens."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        rp = ("rule", "processor")
        self._fired = Counter("reminderd_fired", "Processor runs that succeeded.", rp, registry=r)
        self._failed = Counter("reminderd_failed", "Processor runs that failed.", rp, registry=r)
        self._retried = Counter("reminderd_retried", "Failed processor runs scheduled again.", rp, registry=r)
        self._dead = Counter("reminderd_dead_lettered", "Occurrences dead-lettered.", ["rule"], registry=r)
        self._recovered = Counter(
            "reminderd_recovered", "Occurrences fired by the sweep, not by an event.", ["rule"], registry=r
        )
        self._adopted = Counter(
            "reminderd_adopted", "Raw SET keys adopted into the index.", ["rule"], registry=r
        )
        self._lost = Counter(
            "reminderd_lost",
            "Raw reminders not fired and not proven fired (see reminder.lost).",
            ["rule"],
            registry=r,
        )
        self._raw = Counter(
            "reminderd_raw_outcomes",
            "What became of raw keys besides firing (withdrawn, cancelled, moved, alive, proven, lost, ...).",
            ["rule", "outcome"],
            registry=r,
        )
        self._rejected = Counter(
            "reminderd_rejected_keys", "Keys that are not trigger keys.", ["reason"], registry=r
        )
        self._lateness = Histogram(
            "reminderd_lateness_seconds",
            "Fire time minus due time.",
            ["rule"],
            buckets=LATENESS_BUCKETS_S,
            registry=r,
        )
        self._duration = Histogram(
            "reminderd_processor_duration_seconds",
            "Processor run time.",
            rp,
            buckets=DURATION_BUCKETS_S,
            registry=r,
        )
        self._backlog = Gauge("reminderd_backlog", "Occurrences due now and not yet done.", registry=r)
        self._scheduled = Gauge("reminderd_scheduled", "Reminders in the due index.", registry=r)
        self._connected = Gauge(
            "reminderd_subscriber_connected", "1 while expired events arrive.", registry=r
        )
        self._last_sweep = Gauge(
            "reminderd_last_sweep_timestamp_seconds", "Unix time of the last sweep.", registry=r
        )
        self._in_flight = Gauge("reminderd_in_flight", "Occurrences being processed now.", registry=r)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, cached: the lookup takes a lock and is on the hot path."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def fired(self, rule: str, processor: str) -> None:
        """A processor finished an occurrence."""
        self._child(self._fired, rule, processor).inc()

    def failed(self, rule: str, processor: str) -> None:
        """A processor raised or timed out."""
        self._child(self._failed, rule, processor).inc()

    def retried(self, rule: str, processor: str) -> None:
        """A failed processor run was scheduled again with backoff."""
        self._retried.labels(rule, processor).inc()

    def dead_lettered(self, rule: str) -> None:
        """An occurrence went to the dead-letter stream."""
        self._dead.labels(rule).inc()

    def recovered(self, rule: str) -> None:
        """The sweep fired an occurrence whose expired event never came (or came too late)."""
        self._child(self._recovered, rule).inc()

    def adopted(self, rule: str, count: int = 1) -> None:
        """Trigger keys written with a raw SET got their index records."""
        self._adopted.labels(rule).inc(count)

    def lost(self, rule: str) -> None:
        """A raw reminder was given up on without proof that it fired (logged with its key)."""
        self._lost.labels(rule).inc()

    def raw_outcome(self, rule: str, outcome: str, count: int = 1) -> None:
        """Raw keys the claim, adoption or del path did something with other than firing."""
        self._raw.labels(rule, outcome).inc(count)

    def rejected_key(self, reason: str) -> None:
        """A key name matched no rule or did not parse."""
        self._rejected.labels(reason).inc()

    def observe_lateness(self, rule: str, lateness_ms: float) -> None:
        """How late an occurrence fired; negative values (clock noise) count as on time."""
        self._child(self._lateness, rule).observe(max(lateness_ms, 0.0) / 1000)

    def observe_processor_duration(self, rule: str, processor: str, duration_s: float) -> None:
        """How long one processor run took."""
        self._child(self._duration, rule, processor).observe(duration_s)

    def set_backlog(self, count: int) -> None:
        """Occurrences already due and not finished."""
        self._backlog.set(count)

    def set_scheduled(self, count: int) -> None:
        """Reminders in the due index."""
        self._scheduled.set(count)

    def set_subscriber_connected(self, connected: bool) -> None:
        """Whether the expired-event subscriber is connected."""
        self._connected.set(1 if connected else 0)

    def swept(self, at_s: float | None = None) -> None:
        """A sweep completed (at Unix time ``at_s``, default now)."""
        self._last_sweep.set(time.time() if at_s is None else at_s)

    def set_in_flight(self, count: int) -> None:
        """Occurrences being processed now."""
        self._in_flight.set(count)

    @contextmanager
    def track_in_flight(self) -> Iterator[None]:
        """Count one occurrence as in flight while the block runs."""
        self._in_flight.inc()
        try:
            yield
        finally:
            self._in_flight.dec()

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


@dataclass(frozen=True, slots=True)
class HealthState:
    """What the probes judge: loop heartbeat (``time.monotonic()``), Redis, start-up sweep."""

    loop_heartbeat_s: float
    redis_reachable: bool
    startup_sweep_done: bool


class Health:
    """Mutable health facts, written by the event loop and read by the HTTP thread.

    Plain attribute writes of a float or bool are atomic under the GIL, so no lock.
    """

    def __init__(self) -> None:
        self.loop_heartbeat_s = time.monotonic()
        self.redis_reachable = False
        self.startup_sweep_done = False

    def beat(self) -> None:
        """Record that the event loop is running; call it from a periodic loop task."""
        self.loop_heartbeat_s = time.monotonic()

    async def beat_forever(self, interval_s: float) -> None:
        """Beat every ``interval_s`` until cancelled; run it as a task of the daemon."""
        while True:
            self.beat()
            await asyncio.sleep(interval_s)

    def snapshot(self) -> HealthState:
        """The current facts, for ``MetricsServer``."""
        return HealthState(self.loop_heartbeat_s, self.redis_reachable, self.startup_sweep_done)


def liveness(state: HealthState, stuck_after_s: float) -> tuple[bool, str | None]:
    """Alive unless the loop heartbeat is older than ``stuck_after_s``."""
    age_s = time.monotonic() - state.loop_heartbeat_s
    if age_s > stuck_after_s:
        return False, f"event loop heartbeat is {age_s:.1f}s old (limit {stuck_after_s:g}s)"
    return True, None


def readiness(state: HealthState) -> tuple[bool, str | None]:
    """Ready once Redis answers and the start-up sweep recovered what came due offline."""
    if not state.redis_reachable:
        return False, "redis unreachable"
    if not state.startup_sweep_done:
        return False, "start-up sweep not finished"
    return True, None


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._reply(200, self.server.metrics.render(), CONTENT_TYPE_LATEST)
        elif path in ("/healthz", "/readyz"):
            self._probe(path)
        else:
            self._json(404, {"status": "not found", "paths": ["/metrics", "/healthz", "/readyz"]})

    def _probe(self, path: str) -> None:
        try:
            state = self.server.health()
        except Exception as exc:  # a broken callback must read as unhealthy, not crash the thread
            self._json(503, {"status": "error", "reason": f"health check failed: {exc!r}"})
            return
        ok, reason = liveness(state, self.server.stuck_after_s) if path == "/healthz" else readiness(state)
        self._json(200 if ok else 503, {"status": "ok"} if ok else {"status": "fail", "reason": reason})

    def _json(self, status: int, body: dict[str, Any]) -> None:
        self._reply(status, orjson.dumps(body), "application/json")

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("metrics.request", line=format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        metrics: Metrics,
        health: Callable[[], HealthState],
        stuck_after_s: float,
    ) -> None:
        super().__init__(address, _Handler)
        self.metrics = metrics
        self.health = health
        self.stuck_after_s = stuck_after_s


class MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` over HTTP in a background thread."""

    def __init__(
        self,
        host: str,
        port: int,
        metrics: Metrics,
        health: Callable[[], HealthState],
        *,
        stuck_after_s: float = 30.0,
    ) -> None:
        self._address = (host, port)
        self._metrics = metrics
        self._health = health
        self._stuck_after_s = stuck_after_s
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (the one the OS picked when 0 was asked for)."""
        if self._server is None:
            raise RuntimeError("MetricsServer is not started")
        return int(self._server.server_address[1])

    def start(self) -> MetricsServer:
        """Bind and serve; raises OSError if the address is taken."""
        if self._server is not None:
            return self
        self._server = _Server(self._address, self._metrics, self._health, self._stuck_after_s)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="reminderd-metrics", daemon=True
        )
        self._thread.start()
        log.info("metrics.listening", host=self._address[0], port=self.port)
        return self

    def stop(self) -> None:
        """Stop serving, close the socket and join the thread."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> MetricsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
