"""Hints that something is due sooner than the index was last read, or that a raw key changed.

Notifications are hints; the index is the truth. The subscriber writes expired keys, raw
keys written or deleted, wake messages and re-subscriptions here, the finisher the due time
of each re-armed reminder, the heartbeat a new Redis server; intake reads them, recovery
runs a full adoption pass after each gap, and the daemon reads ``reconnected`` to re-apply
the notification flags. Nothing here fires anything: intake claims through the same
script as the sweep.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


def _none_running(key: str) -> bool:
    return False


class KeyQueue(dict[str, float]):
    """Keys waiting for one kind of batch, each with the monotonic arrival of its first event."""

    def __init__(self) -> None:
        super().__init__()
        self.ready = asyncio.Event()

    def add(self, key: str) -> None:
        """Queue ``key`` (never blocks the subscriber)."""
        self.setdefault(key, time.monotonic())
        self.ready.set()

    def add_many(self, keys: list[str]) -> None:
        """Queue ``keys``, read from the socket together (one arrival time for them all)."""
        if keys:
            now = time.monotonic()
            for key in keys:
                self.setdefault(key, now)
            self.ready.set()


class Hints:
    """Keys waiting for intake, the timer's wake-up, new connections and adoption gaps."""

    def __init__(self) -> None:
        self.expired = KeyQueue()  # expired events: claim if due
        self.written = KeyQueue()  # raw keys written with a TTL (expire events): adopt, follow the TTL
        self.deleted = KeyQueue()  # raw keys deleted (del events): cancel if really gone
        self.wake = asyncio.Event()
        self.planned_wake_ms = 0  # Redis-clock instant the timer next wakes at (written by intake)
        self.reconnected = asyncio.Event()  # events may have been lost: flags to re-apply
        self.gap = asyncio.Event()  # events may have been lost: a full adoption pass
        # Whether a raw occurrence of a key is in flight here (intake sets Capacity.holds_raw).
        self.running: Callable[[str], bool] = _none_running
        self.expired_in_flight = 0  # expired events dropped because their key runs here
        self.backlog = False  # the sweep's last claim came back full: the index holds more due
        self.unadopted: set[str] = set()  # expired keys whose expire event still awaits adoption
        self.urgent = asyncio.Event()  # set when such a key is queued: no backlog holds it back
        self.caught_up = asyncio.Event()  # set when the sweep finds the index drained again

    def key_expired(self, key: str) -> None:
        """An expired event announced ``key`` (never blocks the subscriber).

        Not queued while a raw occurrence of ``key`` runs here: its claim holds the lock, so
        a claim from the event would change nothing (``claim_keys.lua``: the lock is not
        won). Such events are the claim's own doing: a raw key is claimed once it is gone,
        and reading its expiry makes Redis expire it and publish the event (active expiry
        publishes it just before). A burst of raw keys so costs no second round trip per
        key. Only raw claims: an API claim deletes its key alive (no event of it exists),
        so an event while it runs is of a new raw key, which must not be dropped.
        """
        if not self.in_flight(key):
            self.expired.add(key)

    def keys_expired(self, keys: list[str]) -> None:
        """Expired events announced ``keys`` (read together, none running here). A key whose
        write is still queued for adoption is not in the index yet: noted, so a backlog
        does not hold its claim back (``EventBatches``)."""
        self.expired.add_many(keys)
        written = self.written
        if written:
            late = [key for key in keys if key in written]
            if late:
                self.unadopted.update(late)
                self.urgent.set()

    def in_flight(self, key: str) -> bool:
        """Whether a raw occurrence of ``key`` runs here, so its expired event is dropped (counted)."""
        if self.running(key):
            self.expired_in_flight += 1
            return True
        return False

    def swept(self, full: bool) -> None:
        """The sweep's last claim came back full (due work left in the index) or short (none)."""
        self.backlog = full
        if full:
            self.caught_up.clear()
        else:
            self.caught_up.set()

    def due_at(self, due_ms: int | None = None) -> None:
        """Something comes due at ``due_ms`` (None: now); wake the timer if that is before its plan."""
        if due_ms is None or due_ms < self.planned_wake_ms:
            self.planned_wake_ms = 0 if due_ms is None else due_ms
            self.wake.set()

    def new_connection(self) -> None:
        """A re-subscription or a new Redis server: events may have been lost; sweep and scan now."""
        self.due_at(None)
        self.reconnected.set()
        self.gap.set()
