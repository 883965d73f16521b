"""The occurrences in flight and how many more may start (``daemon.concurrency``).

Dispatch adds each claim it starts and removes it when it ends; intake asks how much room
there is before claiming, and waits for room when there is too little. One object, so the
count intake claims against is the count dispatch runs, and the waiting is done here
instead of by an event that another module clears.

In-flight HTTP work holds claiming back too: every request waiting for a connection slot
of its host (``daemon.http_connections_per_host``) takes one slot off what may be claimed,
so a daemon whose receivers are slower than its concurrency claims what it can send and
leaves the rest to other instances instead of holding leases on a queue.
"""

from __future__ import annotations

import asyncio

from reminderd.pipeline.runtime import Context
from reminderd.storage.store import Claim


class Capacity:
    """In-flight claims by (member, occurrence), against the configured concurrency."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._in_flight: dict[tuple[str, int], Claim] = {}
        self._freed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._in_flight)

    def free(self) -> int:
        """How many more occurrences may be claimed now without waiting."""
        http = self._ctx.http
        backlog = 0 if http is None else http.queued
        return max(0, self._ctx.settings.daemon.concurrency - len(self._in_flight) - backlog)

    def add(self, claim: Claim) -> bool:
        """Count ``claim`` as in flight; False if it already was (our own lapsed lease, re-claimed)."""
        ident = (claim.member, claim.occurrence)
        if ident in self._in_flight:
            return False
        self._in_flight[ident] = claim
        return True

    def remove(self, claim: Claim) -> None:
        """``claim`` has ended: its slot is free again."""
        self._in_flight.pop((claim.member, claim.occurrence), None)
        self._freed.set()

    def leases(self) -> list[tuple[str, int]]:
        """(member, occurrence) of everything in flight, for lease renewal."""
        return list(self._in_flight)

    async def room(self, slots: int) -> None:
        """Return once at least ``slots`` slots are free."""
        while self.free() < slots:
            self._freed.clear()
            await self._freed.wait()
