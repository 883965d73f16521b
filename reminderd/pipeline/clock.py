"""Redis's clock as this daemon knows it: the last ``TIME`` read, plus the time elapsed since.

Every due time is on Redis's clock (the scripts read ``TIME``), and every claim reply
carries that clock's reading. Intake observes each one; whatever needs "now" on Redis's
scale (a retry's due time, a deferral, the timer's plan, the gauges) asks the one clock,
so no two parts disagree and the host's wall clock (off, or stepped by NTP) is read only
until the first claim.
"""

from __future__ import annotations

import time


class RedisClock:
    """Redis's epoch milliseconds, extrapolated from the last reading with the monotonic clock."""

    def __init__(self) -> None:
        self._read_ms = int(time.time() * 1000)  # until the first reading: the host's guess
        self._read_at = time.monotonic()

    def observe(self, redis_now_ms: int) -> None:
        """Take a fresh reading of Redis's ``TIME`` (a claim reply's first value)."""
        self._read_ms, self._read_at = redis_now_ms, time.monotonic()

    def now_ms(self) -> int:
        """Redis's clock now, estimated."""
        return self._read_ms + int((time.monotonic() - self._read_at) * 1000)
