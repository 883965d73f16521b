"""Pieces shared by the loopback test servers: serve in a thread, wait for requests.

``HttpReceiver`` (webhooks) and ``TwilioServer`` (SMS) differ in what they answer, not in
how they run or how a test waits on them.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from socketserver import BaseServer
from typing import TypeVar

T = TypeVar("T")
POLL_S = 0.01


def serve_in_thread(server: BaseServer, name: str) -> threading.Thread:
    """Run ``server.serve_forever`` in a daemon thread; the thread, for ``stop_serving``."""
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, name=name, daemon=True
    )
    thread.start()
    return thread


def stop_serving(server: BaseServer, thread: threading.Thread | None) -> None:
    """Stop the loop, close the socket, wait for the thread."""
    server.shutdown()
    server.server_close()
    if thread is not None:
        thread.join(timeout=5)


def _timeout(timeout_s: float, seen: Sequence[object]) -> TimeoutError:
    return TimeoutError(f"condition not met within {timeout_s}s; {len(seen)} request(s)")


def poll(snapshot: Callable[[], list[T]], done: Callable[[list[T]], bool], timeout_s: float) -> list[T]:
    """Poll ``snapshot()`` until ``done`` holds for it; the last snapshot, or raise at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not done(seen := snapshot()):
        if time.monotonic() >= deadline:
            raise _timeout(timeout_s, seen)
        time.sleep(POLL_S)
    return seen


async def poll_async(
    snapshot: Callable[[], list[T]], done: Callable[[list[T]], bool], timeout_s: float
) -> list[T]:
    """``poll`` for async tests: waits without blocking the event loop."""
    deadline = time.monotonic() + timeout_s
    while not done(seen := snapshot()):
        if time.monotonic() >= deadline:
            raise _timeout(timeout_s, seen)
        await asyncio.sleep(POLL_S)
    return seen


def self_signed_cert(folder: Path) -> tuple[Path, Path] | None:
    """A throwaway self-signed certificate for 127.0.0.1 (cert, key), or None without openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key
