"""A minimal HTTP/1.1 keep-alive server protocol for the benchmarks' loopback receivers.

It only splits requests (headers, ``Content-Length`` body) and hands each body on; the
receivers decide how and when to answer. Plain asyncio, so the receiver's own cost stays
far below the client's it measures.
"""

from __future__ import annotations

import asyncio

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


class RequestSplitter(asyncio.Protocol):
    """Calls ``on_request(body)`` once per complete request read from the connection."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, rest = self.buffer.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(rest) < length:
                return
            body, self.buffer = rest[:length], rest[length:]
            self.on_request(body)

    def on_request(self, body: bytes) -> None:
        """Answer one request (subclasses)."""
        raise NotImplementedError

    def answer(self) -> None:
        """Send ``200 ok`` unless the connection is closing."""
        if not self.transport.is_closing():
            self.transport.write(OK)
