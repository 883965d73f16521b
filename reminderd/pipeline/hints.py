"""Hints that something is due sooner than the index was last read.

Notifications are hints; the index is the truth. The subscriber writes expired keys,
wake messages and re-subscriptions here, the finisher the due time of each re-armed
reminder, the heartbeat a new Redis server; intake reads them, and the daemon reads
``reconnected`` to re-apply the notification flags. Nothing here fires anything: intake
claims through the same script as the sweep.
"""

from __future__ import annotations

import asyncio
import time


class Hints:
    """Expired keys waiting to be claimed, the timer's wake-up, and new connections."""

    def __init__(self) -> None:
        self.expired: dict[str, float] = {}  # trigger key -> monotonic arrival of its expired event
        self.expired_ready = asyncio.Event()
        self.wake = asyncio.Event()
        self.planned_wake_ms = 0  # Redis-clock instant the timer next wakes at (written by intake)
        self.reconnected = asyncio.Event()  # events may have been lost: flags to re-apply

    def key_expired(self, key: str) -> None:
        """An expired event announced ``key`` (never blocks the subscriber)."""
        self.expired.setdefault(key, time.monotonic())
        self.expired_ready.set()

    def due_at(self, due_ms: int | None = None) -> None:
        """Something comes due at ``due_ms`` (None: now); wake the timer if that is before its plan."""
        if due_ms is None or due_ms < self.planned_wake_ms:
            self.planned_wake_ms = 0 if due_ms is None else due_ms
            self.wake.set()

    def new_connection(self) -> None:
        """A re-subscription or a new Redis server: events may have been lost; sweep now."""
        self.due_at(None)
        self.reconnected.set()
