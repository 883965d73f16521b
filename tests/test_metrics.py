"""Metrics and the health endpoints, over real HTTP on loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from reminderd.telemetry.endpoint import MetricsServer
from reminderd.telemetry.health import Health, HealthState
from reminderd.telemetry.metrics import Metrics


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    """The value of one sample in the rendered exposition, or None if absent."""
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return None


@pytest.fixture
def health() -> Health:
    """Health facts of a daemon that is up and ready."""
    h = Health()
    h.redis_reachable = True
    h.startup_sweep_done = True
    return h


@pytest.fixture
def server(health: Health) -> Iterator[tuple[Metrics, MetricsServer]]:
    """A started MetricsServer on a free loopback port."""
    metrics = Metrics()
    srv = MetricsServer("127.0.0.1", 0, metrics, health.snapshot, stuck_after_s=5).start()
    yield metrics, srv
    srv.stop()


def test_counters_carry_labels() -> None:
    """Each event method increments its counter under the given labels."""
    m = Metrics()
    m.fired("send_message", "sms")
    m.fired("send_message", "sms")
    m.failed("send_message", "webhook")
    m.retried("send_message", "webhook")
    m.dead_lettered("send_message")
    m.recovered("send_message")
    m.adopted("send_message")
    m.rejected_key("no rule matches the prefix")
    assert sample(m, "reminderd_fired_total", rule="send_message", processor="sms") == 2
    assert sample(m, "reminderd_failed_total", rule="send_message", processor="webhook") == 1
    assert sample(m, "reminderd_retried_total", rule="send_message", processor="webhook") == 1
    assert sample(m, "reminderd_dead_lettered_total", rule="send_message") == 1
    assert sample(m, "reminderd_recovered_total", rule="send_message") == 1
    assert sample(m, "reminderd_adopted_total", rule="send_message") == 1
    assert sample(m, "reminderd_rejected_keys_total", reason="no rule matches the prefix") == 1


def test_lateness_histogram_in_seconds() -> None:
    """Lateness given in ms lands in second buckets from 5 ms to 5 min; negative counts as 0."""
    m = Metrics()
    m.observe_lateness("r", 3)
    m.observe_lateness("r", 40)
    m.observe_lateness("r", -2)
    m.observe_lateness("r", 400_000)
    assert sample(m, "reminderd_lateness_seconds_bucket", rule="r", le="0.005") == 2
    assert sample(m, "reminderd_lateness_seconds_bucket", rule="r", le="0.05") == 3
    assert sample(m, "reminderd_lateness_seconds_bucket", rule="r", le="300.0") == 3
    assert sample(m, "reminderd_lateness_seconds_count", rule="r") == 4
    assert sample(m, "reminderd_lateness_seconds_sum", rule="r") == pytest.approx(400.043)


def test_gauges_and_in_flight() -> None:
    """Gauges hold the last value set."""
    m = Metrics()
    m.set_backlog(7)
    m.set_scheduled(1000)
    m.set_subscriber_connected(True)
    m.swept(1_700_000_000.5)
    m.observe_processor_duration("r", "log", 0.02)
    m.set_in_flight(3)
    assert sample(m, "reminderd_in_flight") == 3
    assert sample(m, "reminderd_backlog") == 7
    assert sample(m, "reminderd_scheduled") == 1000
    assert sample(m, "reminderd_subscriber_connected") == 1
    assert sample(m, "reminderd_last_sweep_timestamp_seconds") == 1_700_000_000.5
    assert sample(m, "reminderd_processor_duration_seconds_count", rule="r", processor="log") == 1


def test_registries_are_private() -> None:
    """Two Metrics objects do not collide and do not share values."""
    a, b = Metrics(), Metrics()
    a.fired("r", "p")
    assert sample(a, "reminderd_fired_total", rule="r", processor="p") == 1
    assert sample(b, "reminderd_fired_total", rule="r", processor="p") is None


def test_metrics_endpoint(server: tuple[Metrics, MetricsServer]) -> None:
    """GET /metrics returns the Prometheus text format with current values."""
    metrics, srv = server
    assert srv.port > 0
    metrics.fired("send_message", "log")
    resp = httpx.get(f"http://127.0.0.1:{srv.port}/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    assert 'reminderd_fired_total{processor="log",rule="send_message"} 1.0' in resp.text


def test_healthz_and_readyz_ok(server: tuple[Metrics, MetricsServer]) -> None:
    """A beating loop with Redis up and the sweep done answers 200 on both probes."""
    _, srv = server
    for path in ("/healthz", "/readyz"):
        resp = httpx.get(f"http://127.0.0.1:{srv.port}{path}")
        assert (resp.status_code, resp.json()) == (200, {"status": "ok"})


def test_healthz_fails_when_loop_is_stuck(health: Health, server: tuple[Metrics, MetricsServer]) -> None:
    """A heartbeat older than the limit gives 503 with the age in the reason."""
    _, srv = server
    health.loop_heartbeat_s = time.monotonic() - 60
    resp = httpx.get(f"http://127.0.0.1:{srv.port}/healthz")
    assert resp.status_code == 503
    assert resp.json()["status"] == "fail"
    assert resp.json()["reason"].startswith("event loop heartbeat is 60.")
    assert resp.json()["reason"].endswith("s old (limit 5s)")


def test_readyz_reasons(health: Health, server: tuple[Metrics, MetricsServer]) -> None:
    """readyz says 503 with the exact reason while Redis is down or the start-up sweep runs."""
    _, srv = server
    url = f"http://127.0.0.1:{srv.port}/readyz"
    health.startup_sweep_done = False
    resp = httpx.get(url)
    assert (resp.status_code, resp.json()) == (
        503,
        {"status": "fail", "reason": "start-up sweep not finished"},
    )
    health.redis_reachable = False
    resp = httpx.get(url)
    assert (resp.status_code, resp.json()) == (503, {"status": "fail", "reason": "redis unreachable"})


def test_broken_health_callback_reads_unhealthy() -> None:
    """A health callback that raises yields 503, and the server keeps serving."""

    def broken() -> HealthState:
        raise RuntimeError("gone")

    with MetricsServer("127.0.0.1", 0, Metrics(), broken) as srv:
        resp = httpx.get(f"http://127.0.0.1:{srv.port}/healthz")
        assert resp.status_code == 503
        assert resp.json()["reason"] == "health check failed: RuntimeError('gone')"
        assert httpx.get(f"http://127.0.0.1:{srv.port}/metrics").status_code == 200


def test_unknown_path_is_404(server: tuple[Metrics, MetricsServer]) -> None:
    """Other paths answer 404 and list the served ones."""
    _, srv = server
    resp = httpx.get(f"http://127.0.0.1:{srv.port}/nope")
    assert resp.status_code == 404
    assert resp.json()["paths"] == ["/metrics", "/healthz", "/readyz"]


def test_stop_releases_the_port(health: Health) -> None:
    """After stop() the port is closed and port is no longer available."""
    srv = MetricsServer("127.0.0.1", 0, Metrics(), health.snapshot).start()
    port = srv.port
    srv.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/metrics")
    with pytest.raises(RuntimeError, match=r"^MetricsServer is not started$"):
        _ = srv.port


def test_port_in_use_raises(server: tuple[Metrics, MetricsServer], health: Health) -> None:
    """Binding a port that is already served raises OSError at start()."""
    _, srv = server
    with pytest.raises(OSError, match="Address already in use"):
        MetricsServer("127.0.0.1", srv.port, Metrics(), health.snapshot).start()
