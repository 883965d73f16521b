"""Where log lines go: a stream that never raises into the daemon and never blocks it.

A log write is the last thing that may stop reminders from firing. stdout can be a full
disk (``ENOSPC``), a pipe whose reader went away (``EPIPE``), or journald's socket while
journald is stalled, so a plain ``print`` either raises into whatever was logging or
blocks the event loop. Lines are therefore handed to one writer thread through a bounded
queue (a deque: an append is all the caller pays, the thread is woken only when it sleeps,
and it gathers a few milliseconds of lines per write): the caller only enqueues; a line
that finds the queue full, or that the stream refuses, is dropped and counted (``dropped``,
exported as ``reminderd_log_dropped_total``); once the stream takes writes again, writing
resumes with the next line. In-memory streams (tests, ``StringIO``) cannot block or fail,
so they are written directly, in order.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import os
import threading
import time
from collections import deque
from typing import TextIO

QUEUE_LINES = 10_000  # lines waiting for a stalled stream before new ones are dropped
_BATCH_LINES = 256  # lines written per write() call by the writer thread
_GATHER_S = 0.002  # once woken, the writer waits this long for more lines to write together


class LogOutput:
    """A text stream for structlog and stdlib logging, safe against a failing ``stream``."""

    def __init__(self, stream: TextIO, *, queue_lines: int = QUEUE_LINES) -> None:
        self.stream = stream
        self._refused = 0  # counted by the caller: the queue was full
        self._failed = 0  # counted by the writer: the stream raised
        self._partial: list[str] = []
        self._lock = threading.Lock()
        self._lines: deque[str] = deque()
        self._limit = queue_lines
        self._ready = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._fd = _descriptor(stream)
        if self._fd is not None:
            self._encoding = getattr(stream, "encoding", None) or "utf-8"
            self._thread = threading.Thread(target=self._drain, name="reminderd-log-writer", daemon=True)
            self._thread.start()

    def write(self, text: str) -> int:
        """Take ``text``; whole lines go on at once, a partial line waits for its newline."""
        with self._lock:
            self._partial.append(text)
            if "\n" not in text:
                return len(text)
            joined = "".join(self._partial)
            head, _, tail = joined.rpartition("\n")
            self._partial = [tail] if tail else []
            self._emit(head + "\n")
        return len(text)

    @property
    def dropped(self) -> int:
        """Lines lost so far: queue full (a stalled stream) or refused by the stream."""
        return self._refused + self._failed

    def flush(self) -> None:
        """Nothing to do: whole lines are passed on as they complete."""

    def isatty(self) -> bool:
        """Whether the underlying stream is a terminal (picks the console renderer)."""
        try:
            return self.stream.isatty()
        except (OSError, ValueError):
            return False

    def close(self, timeout_s: float = 2.0) -> None:
        """Write what is queued (within ``timeout_s``) and stop the writer thread."""
        if self._thread is None or not self._thread.is_alive():
            return
        self._stopping = True
        self._ready.set()
        self._thread.join(timeout_s)

    def _emit(self, lines: str) -> None:
        if self._thread is None:
            self._write(lines, lines.count("\n"))
            return
        if len(self._lines) >= self._limit:
            self._refused += lines.count("\n")
            return
        self._lines.append(lines)
        if not self._ready.is_set():
            self._ready.set()

    def _write(self, text: str, lines: int) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # ENOSPC, EPIPE, EAGAIN, EBADF; ValueError: stream closed
            self._failed += lines

    def _drain(self) -> None:
        """The writer thread: batches of queued lines, written and flushed, until stopped.

        A line appended after the deque was seen empty finds the event cleared and sets it,
        so no line waits for a later one to be written.
        """
        lines = self._lines
        while True:
            self._ready.wait()
            if not self._stopping:
                time.sleep(_GATHER_S)
            self._ready.clear()
            while lines:
                text = "".join(lines.popleft() for _ in range(min(len(lines), _BATCH_LINES)))
                self._write_fd(text.encode(self._encoding, "backslashreplace"), text.count("\n"))
            if self._stopping:
                return

    def _write_fd(self, data: bytes, lines: int) -> None:
        """All of ``data`` to the descriptor, unbuffered: a refused write leaves nothing behind."""
        assert self._fd is not None
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError:
            self._failed += lines


def _descriptor(stream: TextIO) -> int | None:
    """The file descriptor behind ``stream`` (file, pipe, socket, terminal), flushed; else None."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError, io.UnsupportedOperation, AttributeError):
        return None
    with contextlib.suppress(OSError, ValueError):
        stream.flush()  # what was written through the stream itself goes first
    return fd


_OUTPUTS: dict[int, LogOutput] = {}


def output_for(stream: TextIO) -> LogOutput:
    """The one ``LogOutput`` of ``stream``: a reload reconfigures logging, not the writer."""
    found = _OUTPUTS.get(id(stream))
    if found is None or found.stream is not stream:
        found = _OUTPUTS[id(stream)] = LogOutput(stream)
    return found


def dropped_lines() -> int:
    """Log lines dropped so far, over every output of this process."""
    return sum(out.dropped for out in _OUTPUTS.values())


@atexit.register
def _close_all() -> None:
    for out in list(_OUTPUTS.values()):
        out.close()
