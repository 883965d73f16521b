"""Prometheus metrics.

Metrics live in a private ``CollectorRegistry``: the global default would make two
``Metrics`` (tests, or an app embedding reminderd) collide on duplicate names. Label
values are rule names, processor names and rejection reasons, all bounded by the config
or by code, never user ids or keys, so cardinality stays small. They are served, with the
health probes, by ``reminderd.telemetry.endpoint``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from reminderd.telemetry.log_output import dropped_lines

LATENESS_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """Every reminderd metric, with one small method per thing that happens."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._add_counters(self.registry)
        self._add_histograms(self.registry)
        self._add_gauges(self.registry)
        self.registry.register(_LogDropped())

    def _add_counters(self, r: CollectorRegistry) -> None:
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
        self._lease_lost = Counter(
            "reminderd_lease_lost", "Verdicts dropped: the lease lapsed, another owner took over.", registry=r
        )

    def _add_histograms(self, r: CollectorRegistry) -> None:
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
            ("rule", "processor"),
            buckets=DURATION_BUCKETS_S,
            registry=r,
        )

    def _add_gauges(self, r: CollectorRegistry) -> None:
        self._backlog = Gauge("reminderd_backlog", "Occurrences due now and not yet done.", registry=r)
        self._scheduled = Gauge("reminderd_scheduled", "Reminders in the due index.", registry=r)
        self._connected = Gauge(
            "reminderd_subscriber_connected", "1 while expired events arrive.", registry=r
        )
        self._node_connected = Gauge(
            "reminderd_subscriber_node_connected",
            "1 while the subscriber on this Redis Cluster primary is subscribed.",
            ("node",),
            registry=r,
        )
        self._last_sweep = Gauge(
            "reminderd_last_sweep_timestamp_seconds", "Unix time of the last sweep.", registry=r
        )
        self._in_flight = Gauge("reminderd_in_flight", "Occurrences being processed now.", registry=r)
        self._clock_offset = Gauge(
            "reminderd_clock_offset_seconds", "Redis's clock minus this host's (last heartbeat).", registry=r
        )
        self._loop_lag = Gauge(
            "reminderd_loop_lag_seconds", "How late the event loop ran its last lag probe.", registry=r
        )
        self._claim_limit = Gauge(
            "reminderd_claim_limit",
            "Occurrences that may be in flight now (less while the loop lags).",
            registry=r,
        )

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, cached: the lookup takes a lock and is on the hot path."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def fired(self, rule: str, processor: str, count: int = 1) -> None:
        """A processor finished occurrences (``count`` of them in one batch call)."""
        self._child(self._fired, rule, processor).inc(count)

    def failed(self, rule: str, processor: str, count: int = 1) -> None:
        """A processor raised or timed out."""
        self._child(self._failed, rule, processor).inc(count)

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

    def lease_lost(self) -> None:
        """A verdict was dropped: the occurrence's lease had lapsed (a pause longer than the lease)."""
        self._lease_lost.inc()

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

    def set_node_subscriber_connected(self, node: str, connected: bool | None) -> None:
        """Whether the subscriber on Cluster primary ``node`` is subscribed (None: node gone)."""
        if connected is None:
            with contextlib.suppress(KeyError):
                self._node_connected.remove(node)
            return
        self._node_connected.labels(node=node).set(1 if connected else 0)

    def swept(self, at_s: float | None = None) -> None:
        """A sweep completed (at Unix time ``at_s``, default now)."""
        self._last_sweep.set(time.time() if at_s is None else at_s)

    def set_clock_offset(self, offset_ms: int) -> None:
        """How far this host's clock is behind Redis's (negative: ahead)."""
        self._clock_offset.set(offset_ms / 1000)

    def set_loop_lag(self, lag_s: float, limit: int) -> None:
        """The event loop's last lag sample and the in-flight limit it allows."""
        self._loop_lag.set(lag_s)
        self._claim_limit.set(limit)

    def set_in_flight(self, count: int) -> None:
        """Occurrences being processed now."""
        self._in_flight.set(count)

    def count_replication_short(self, read: Callable[[], int]) -> None:
        """Serve ``reminderd_replication_short_total``, read at each scrape (``redis.wait_replicas``)."""
        help_text = "Claims and finishes that fewer replicas acknowledged than redis.wait_replicas asks."
        self.registry.register(_ReadCounter("reminderd_replication_short", help_text, read))

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


class _ReadCounter(Collector):
    """A counter kept elsewhere (a plain int on the hot path), read at each scrape."""

    def __init__(self, name: str, help_text: str, read: Callable[[], int]) -> None:
        self._name, self._help, self._read = name, help_text, read

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self._name, self._help, self._read())


class _LogDropped(Collector):
    """``reminderd_log_dropped_total``, read at each scrape from the log outputs' own count."""

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "reminderd_log_dropped", "Log lines dropped (stream full, closed, failing).", dropped_lines()
        )
