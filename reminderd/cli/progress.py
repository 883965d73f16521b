"""A progress line on the terminal for a command that takes long (a bulk replay).

Written to stderr only when stderr is a terminal, redrawn at most five times a second and
cleared at the end, so piped or captured output (and ``--json``) never contains it.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

REDRAW_S = 0.2


class Progress:
    """``label done/total (pct%)`` on one terminal line."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.shown = self.stream.isatty() and total > 0
        self._drawn_s = 0.0

    def advance(self, count: int = 1) -> None:
        """``count`` more items are done; redraw if the last drawing is old enough."""
        self.done += count
        now_s = time.monotonic()
        if self.shown and (now_s - self._drawn_s >= REDRAW_S or self.done >= self.total):
            self._drawn_s = now_s
            pct = min(100, self.done * 100 // self.total)
            self.stream.write(f"\r{self.label} {self.done}/{self.total} ({pct}%)")
            self.stream.flush()

    def close(self) -> None:
        """Clear the line, so what the command prints next starts clean."""
        if self.shown and self._drawn_s:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
