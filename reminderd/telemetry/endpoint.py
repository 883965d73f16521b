"""``/metrics``, ``/healthz`` and ``/readyz`` over HTTP.

The endpoint runs ``ThreadingHTTPServer`` in a daemon thread on purpose: a scrape or a
health probe must still be answered when the event loop is stuck, since telling that the
loop is stuck is what ``/healthz`` is for.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import structlog
from prometheus_client import CONTENT_TYPE_LATEST

from reminderd.telemetry.health import HealthState, liveness, readiness
from reminderd.telemetry.metrics import Metrics

log = structlog.get_logger(__name__)


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
