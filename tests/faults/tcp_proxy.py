"""A real loopback TCP proxy between a daemon and Redis that a test can cut and restore.

    with TcpProxy(redis_port) as proxy:
        ... point the daemon at proxy.url ...
        proxy.pause()           # drop every connection; new ones are closed on accept
        proxy.pause(drop=False) # or: keep connections open but forward nothing (a black hole)
        proxy.resume()

Threads, not asyncio, so it keeps forwarding while the test blocks in ``time.sleep`` or a
synchronous Redis call. Each accepted connection gets its own upstream connection and
two pump threads.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

_CHUNK = 65536
_POLL_S = 0.05


class _Pair:
    """One client connection and its upstream connection."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream

    def close(self) -> None:
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


class TcpProxy:
    """Forwards 127.0.0.1:<port> to ``target_host:target_port`` until paused."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(_POLL_S)
        self._lock = threading.Lock()
        self._pairs: set[_Pair] = set()
        self._flowing = threading.Event()  # cleared by pause(drop=False): pumps hold their data
        self._flowing.set()
        self._dropping = False
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self.accepted = 0
        self.dropped = 0

    @property
    def port(self) -> int:
        """The port clients connect to."""
        return int(self._listener.getsockname()[1])

    def url(self, db: int = 0) -> str:
        """redis:// URL through the proxy."""
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> TcpProxy:
        """Accept connections in a background thread."""
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)
        self._thread.start()
        return self

    def pause(self, *, drop: bool = True) -> None:
        """Cut the link: drop every connection (default) or hold all traffic (``drop=False``)."""
        with self._lock:
            self._dropping = drop
            self._flowing.clear()
            pairs = list(self._pairs) if drop else []
            if drop:
                self._pairs.clear()
                self.dropped += len(pairs)
        for pair in pairs:
            pair.close()

    def resume(self) -> None:
        """Forward again; held data flows on, new connections are accepted normally."""
        with self._lock:
            self._dropping = False
            self._flowing.set()

    def close(self) -> None:
        """Stop accepting and close every connection."""
        self._closed.set()
        self._flowing.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            pairs, self._pairs = list(self._pairs), set()
        for pair in pairs:
            pair.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._open, args=(client,), name="tcp-proxy-open", daemon=True).start()

    def _open(self, client: socket.socket) -> None:
        """Connect upstream (waiting while held), unless the link is being dropped."""
        while not self._flowing.wait(_POLL_S):
            if self._dropping or self._closed.is_set():
                break
        if self._dropping or self._closed.is_set():
            client.close()
            return
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        pair = _Pair(client, upstream)
        with self._lock:
            self.accepted += 1
            self._pairs.add(pair)
        for src, dst in ((client, upstream), (upstream, client)):
            pump = threading.Thread(target=self._pump, args=(pair, src, dst), name="tcp-pump", daemon=True)
            pump.start()

    def _pump(self, pair: _Pair, src: socket.socket, dst: socket.socket) -> None:
        """Copy ``src`` to ``dst`` until either side closes; data waits while the link is held."""
        try:
            while data := src.recv(_CHUNK):
                while not self._flowing.wait(_POLL_S):
                    if self._closed.is_set():
                        return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._pairs.discard(pair)
            pair.close()
