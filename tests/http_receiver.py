"""A real loopback HTTP server for tests: records requests, answers from a script.

Tests of the HTTP processors (and fault-injection tests that run daemons as
subprocesses) point them at an ``HttpReceiver`` instead of mocking HTTP::

    with HttpReceiver() as receiver:
        receiver.script([500, Reply(429, retry_after="2"), 200])  # then the default (200)
        receiver.script([503], path="/sms")  # a queue of its own for one path
        ... POST to receiver.url("/hook") ...
        receiver.wait_for(lambda reqs: len(reqs) >= 3, timeout_s=5)
        assert receiver.count_by_idempotency_key() == {"k:1": 3}

Each request takes the next scripted reply of its path's queue, else of the shared
queue, else the default reply. A ``Reply`` can wait (``delay_s``) before answering,
hang until the receiver closes (``hang=True``), or drop the connection without an
answer (``drop=True``). Closing the receiver releases every waiting handler and shuts
down open connections, so clients see an error instead of hanging.

Header names in recorded requests are lower-cased; the server speaks HTTP/1.1 with
keep-alive, so ``client_port`` tells whether a client reused its connection.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from tests.serving import poll, poll_async, serve_in_thread, stop_serving

Predicate = Callable[[list["Request"]], bool]


@dataclass(frozen=True)
class Reply:
    """One scripted response; an ``int`` in a script is shorthand for ``Reply(status)``."""

    status: int = 200
    body: bytes | str = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    retry_after: str | None = None  # sent as the Retry-After header (seconds or HTTP date)
    delay_s: float = 0.0  # wait this long before answering
    hang: bool = False  # never answer; released (connection closed) when the receiver closes
    drop: bool = False  # close the connection without sending a response

    def body_bytes(self) -> bytes:
        """The body as bytes (str bodies are UTF-8)."""
        return self.body.encode() if isinstance(self.body, str) else self.body


@dataclass(frozen=True)
class Request:
    """One request as received (headers lower-cased)."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    received_at_s: float  # wall clock, comparable with epoch times of other processes
    client_port: int
    status: int | None  # the status answered (None for hang/drop)

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # bursts of hundreds of concurrent connections must not be reset
    receiver: HttpReceiver


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.receiver._opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.receiver._closed(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log."""

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self) -> None:
        body = self._read_body()
        path = self.path
        receiver = self.server.receiver
        reply = receiver._next_reply(path)
        status = None if reply.hang or reply.drop else reply.status
        receiver._record(
            Request(
                method=self.command,
                path=path,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                received_at_s=time.time(),
                client_port=int(self.client_address[1]),
                status=status,
            )
        )
        if reply.hang:
            receiver._released.wait()
            self.close_connection = True
            return
        if reply.delay_s and receiver._released.wait(reply.delay_s):
            self.close_connection = True
            return
        if reply.drop:
            self.close_connection = True
            return
        self._respond(reply)

    def _respond(self, reply: Reply) -> None:
        payload = reply.body_bytes()
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.retry_after is not None:
            self.send_header("Retry-After", reply.retry_after)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


class HttpReceiver:
    """A threaded HTTP server on 127.0.0.1 with a free port; a context manager."""

    def __init__(self, default: Reply | int = 200, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self.default = _as_reply(default)
        self._ssl_context = ssl_context
        self._lock = threading.Lock()
        self._requests: list[Request] = []
        self._queues: dict[str | None, deque[Reply]] = {}
        self._connections: set[socket.socket] = set()
        self._released = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> HttpReceiver:
        """Bind a free loopback port and serve in a background thread."""
        server = _Server(("127.0.0.1", 0), _Handler)
        server.receiver = self
        if self._ssl_context is not None:
            server.socket = self._ssl_context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = serve_in_thread(server, "http-receiver")
        return self

    def close(self) -> None:
        """Stop serving, release waiting handlers and shut down open connections."""
        self._released.set()
        if self._server is None:
            return
        self._server.shutdown()
        with self._lock:
            open_now = list(self._connections)
        for conn in open_now:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        stop_serving(self._server, self._thread)
        self._server = None

    def __enter__(self) -> HttpReceiver:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def port(self) -> int:
        """The bound port."""
        if self._server is None:
            raise RuntimeError("receiver is not started")
        return int(self._server.server_address[1])

    def url(self, path: str = "/") -> str:
        """Absolute URL of ``path`` on this receiver."""
        scheme = "https" if self._ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def script(self, replies: Iterable[Reply | int], *, path: str | None = None) -> None:
        """Queue replies for ``path`` (exact request path incl. query), or for any path."""
        with self._lock:
            self._queues.setdefault(path, deque()).extend(_as_reply(r) for r in replies)

    @property
    def requests(self) -> list[Request]:
        """A snapshot of every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def requests_for(self, path: str) -> list[Request]:
        """The requests received on ``path``."""
        return [r for r in self.requests if r.path == path]

    def count_by_idempotency_key(self) -> Counter[str]:
        """How many requests carried each ``Idempotency-Key`` value."""
        return Counter(r.headers["idempotency-key"] for r in self.requests if "idempotency-key" in r.headers)

    def wait_for(self, predicate: Predicate, timeout_s: float = 5.0) -> list[Request]:
        """Poll until ``predicate(requests)`` holds; return the requests, or raise at the deadline."""
        return poll(lambda: self.requests, predicate, timeout_s)

    async def wait_for_async(self, predicate: Predicate, timeout_s: float = 5.0) -> list[Request]:
        """``wait_for`` for async tests: polls without blocking the event loop."""
        return await poll_async(lambda: self.requests, predicate, timeout_s)

    def _next_reply(self, path: str) -> Reply:
        with self._lock:
            for queue_key in (path, None):
                queue = self._queues.get(queue_key)
                if queue:
                    return queue.popleft()
        return self.default

    def _record(self, request: Request) -> None:
        with self._lock:
            self._requests.append(request)

    def _opened(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.add(conn)

    def _closed(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.discard(conn)


def _as_reply(reply: Reply | int) -> Reply:
    return reply if isinstance(reply, Reply) else Reply(reply)


def statuses(requests: Sequence[Request]) -> list[int | None]:
    """The statuses answered to ``requests`` (handy in assertions)."""
    return [r.status for r in requests]
