"""The store's upkeep of trigger keys: the timer's disarm and the repair of vanished keys.

Neither changes what fires (the index stays the truth): the disarm spares the subscribers
a burst of events (the single layout only: on Cluster it is skipped), the repair brings
the expired-event fast path back for keys that vanished.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reminderd.storage.records import key_of
from reminderd.storage.scripts import Scripts
from reminderd.storage.shards import Shards


@dataclass(frozen=True, slots=True)
class DisarmCursor:
    """Where a disarm pass stands: after the index entry ``member`` at ``score_ms``.

    The first page starts with no member, after ``score_ms`` (the window's exclusive start).
    """

    score_ms: int
    member: str = ""


class Upkeep:
    """The upkeep half of ``Store`` (no I/O until called)."""

    shards: Shards

    async def disarm(self, from_ms: int, until_ms: int, *, page: int = 5000) -> int:
        """Take the expiry off trigger keys of entries due in (from_ms, until_ms] before they
        expire; an optimisation of the single layout only (none: 0)."""
        if not self.shards.inline:
            return 0
        total, cursor = 0, DisarmCursor(from_ms)
        while True:
            looked, more = await self.disarm_page(cursor, until_ms, page)
            total += looked
            if more is None:
                return total
            cursor = more

    async def disarm_page(
        self, cursor: DisarmCursor, until_ms: int, limit: int
    ) -> tuple[int, DisarmCursor | None]:
        """One page of ``disarm`` after ``cursor``: entries looked at, and where to go on (None: done)."""
        args: list[str | int] = [until_ms, limit, cursor.score_ms, cursor.member]
        looked, score, member, more = await self.shards.scripts[0]("disarm", args=args)
        return int(looked), DisarmCursor(int(score), member) if int(more) else None

    async def repair(self, members: Sequence[str]) -> int:
        """Re-create missing trigger keys of future index entries; how many were re-created."""
        if not members:
            return 0
        state = await self.shards.peek(m for m in members if m == key_of(m))

        async def one(run: Scripts, idx: list[int]) -> int:
            mine = [members[i] for i in idx]
            outside = None if state is None else {m: state[m] for m in mine if m in state}
            n, arms = await run.call("repair", args=mine, outside=outside)
            await self.shards.triggers.arm(arms)
            return int(n)

        return sum(n for _, n in await self.shards.each(members, one))
