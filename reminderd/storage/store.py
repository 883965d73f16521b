"""Every reminder state change, each one atomic Lua script called by SHA.

The store knows Redis and the data model (``docs/ARCHITECTURE.md``) and nothing about
rules or processors: the pipeline decides, the store applies. All due checks inside the
scripts use Redis ``TIME``, never the host clock. The scripts share one prelude and one
calling convention (``reminderd.storage.scripts``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import redis.asyncio as aioredis

from reminderd.core.schedules import Once, Schedule, schedule_to_json
from reminderd.models import Misfire
from reminderd.storage.durability import Durability
from reminderd.storage.names import Names
from reminderd.storage.raw import RawKeys
from reminderd.storage.reads import Reads
from reminderd.storage.records import (
    AUX_SEP,
    DONE_SEP,
    RESET,
    Adoption,
    Claim,
    Claimed,
    Note,
    ReplayRequest,
    ScheduleRequest,
    decode_payload,
    encode_payload,
    key_of,
    pack_items,
    parse_claims,
)
from reminderd.storage.scripts import Scripts
from reminderd.storage.verdicts import Completion, DeadLetterRequest, Deferral, FinishItem, Retry, finish_args

__all__ = [
    "AUX_SEP",
    "RESET",
    "Adoption",
    "Claim",
    "Claimed",
    "Completion",
    "DeadLetterRequest",
    "Deferral",
    "DisarmCursor",
    "FinishItem",
    "Note",
    "RawKeys",
    "ReplayRequest",
    "Retry",
    "ScheduleRequest",
    "Store",
    "decode_payload",
    "encode_payload",
    "key_of",
]

DEAD_MAXLEN = 100_000  # dead letters kept (approximately: XADD MAXLEN ~)


@dataclass(frozen=True, slots=True)
class DisarmCursor:
    """Where a disarm pass stands: after the index entry ``member`` at ``score_ms``.

    The first page starts with no member, after ``score_ms`` (the window's exclusive start).
    """

    score_ms: int
    member: str = ""


def _schedule_json(schedule: Schedule) -> str:
    return "" if isinstance(schedule, Once) else schedule_to_json(schedule)


def _misfire(misfire: Misfire | None) -> str:
    return misfire.value if misfire else ""


class Store(Reads):
    """Reminder state in Redis. Construct cheaply; scripts load lazily by SHA (reading: ``Reads``)."""

    def __init__(self, redis: aioredis.Redis, names: Names, durability: Durability | None = None) -> None:
        self.redis = redis
        self.names = names
        self.durability = durability  # redis.wait_replicas: claims and finishes WAIT for replicas
        self._run = Scripts(redis, names, durability)
        self.raw = RawKeys(redis, self._run, DEAD_MAXLEN)

    # -- scheduling -----------------------------------------------------------------

    async def schedule(self, req: ScheduleRequest) -> int | None:
        """Write one reminder; the occurrence number, or None if ``only_if_absent`` found one."""
        head: list[str | int] = [req.key, req.due_at_ms, "", req.payload_json]
        flag = "1" if req.only_if_absent else "0"
        args = [*head, _schedule_json(req.schedule), _misfire(req.misfire), flag, "", "", ""]
        written, occ = await self._run("schedule", keys=self._run.reminder_keys(req.key), args=args)
        return int(occ) if written else None

    async def replay(self, req: ReplayRequest) -> None:
        """Schedule a dead letter again as a one-shot, deleting the dead letter in the same step."""
        head: list[str | int] = [req.member, req.due_at_ms, req.nominal_ms, req.payload_json, "", ""]
        args = [*head, "0", DONE_SEP.join(req.done), req.occurrence, req.dead_id]
        await self._run("schedule", keys=self._run.reminder_keys(req.member), args=args)

    async def schedule_many(self, reqs: Iterable[ScheduleRequest], *, chunk: int = 1000) -> int:
        """Write many reminders with one script call per chunk; returns how many were written."""
        written = 0
        batch: list[ScheduleRequest] = []
        for req in reqs:
            batch.append(req)
            if len(batch) >= chunk:
                written += await self._schedule_chunk(batch)
                batch = []
        if batch:
            written += await self._schedule_chunk(batch)
        return written

    async def _schedule_chunk(self, reqs: Sequence[ScheduleRequest]) -> int:
        """One script call for the whole chunk, packed into one argument (``records.pack_items``)."""
        return int(await self._run("schedule_many", args=[pack_items(reqs)]))

    async def cancel(self, key: str) -> bool:
        """Remove a reminder entirely, its pending replays included; True if anything existed."""
        while True:
            aux = sorted(str(m) for m in await self.redis.smembers(self.names.aux(key)))
            keys = self._run.reminder_keys(key)
            for member in aux:
                keys += [self.names.record(member), self.names.lock(member)]
            found = int(await self._run("cancel", keys=keys, args=[key, *aux]))
            if found >= 0:  # else a replay was added since the set was read
                return found == 1

    # -- the pipeline's steps -------------------------------------------------------

    async def claim_due(self, instance: str, *, limit: int, lease_ms: int) -> Claimed:
        """Claim up to ``limit`` due occurrences from the index (raw ones only once their key is gone)."""
        return parse_claims(
            await self._run("claim_due", instance=instance, args=[limit, lease_ms], durable=True)
        )

    async def claim_keys(
        self,
        instance: str,
        members: Sequence[str],
        *,
        lease_ms: int,
        fire_unseen: bool,
        payload_max_bytes: int,
    ) -> Claimed:
        """Claim the given members if due (expired events, hints only: see claim_keys.lua).

        ``fire_unseen``: a record-less key that is gone and not proven fired becomes a raw
        one-shot due now; otherwise it is noted lost. A key that exists is adopted instead.
        """
        flag = "1" if fire_unseen else "0"
        args: list[str | int] = [lease_ms, flag, payload_max_bytes, DEAD_MAXLEN, *members]
        return parse_claims(await self._run("claim_keys", instance=instance, args=args, durable=True))

    async def finish_many(
        self, instance: str, items: Sequence[FinishItem], *, fired_window_ms: int
    ) -> list[int]:
        """Apply verdicts of any kind in one script call; per item 0 (not ours any more), 1
        (applied) or ``RESET`` (applied; the raw key was written again meanwhile: adopt it).

        ``fired_window_ms`` is how long a finished one-shot is remembered against a late
        expired event (``daemon.raw_dedupe_window``, read by the caller when it finishes).
        """
        return await self._finish(instance, items, fired_window_ms)

    async def _finish(self, instance: str, items: Sequence[FinishItem], window_ms: int | None) -> list[int]:
        if not items:
            return []
        args = ["" if window_ms is None else window_ms, DEAD_MAXLEN, *finish_args(items)]
        return [int(x) for x in await self._run("finish", instance=instance, args=args, durable=True)]

    async def complete_many(
        self, instance: str, items: Sequence[Completion], *, stat: str | None = None, fired_window_ms: int
    ) -> int:
        """Apply completions in one script call; how many were still ours.

        ``stat``, when given, replaces each item's own counter.
        """
        if stat is not None:
            items = [replace(item, stat=stat) for item in items]
        return sum(bool(x) for x in await self._finish(instance, items, fired_window_ms))

    async def fail(self, instance: str, item: Retry | DeadLetterRequest, *, fired_window_ms: int) -> int:
        """Retry later or dead-letter; 0 not ours, 1 retry scheduled, 2 dead-lettered."""
        (ours,) = await self._finish(instance, [item], fired_window_ms)
        return 0 if not ours else 1 if isinstance(item, Retry) else 2

    async def defer(self, instance: str, claim: Claim, until_ms: int) -> bool:
        """Move the claimed occurrence to ``until_ms`` keeping its number and nominal due."""
        (ours,) = await self._finish(instance, [Deferral(claim.member, claim.occurrence, until_ms)], None)
        return bool(ours)

    async def mark_done(self, instance: str, claim: Claim, processor: str) -> bool:
        """Record one processor as finished for the claimed occurrence."""
        keys = self._run.reminder_keys(claim.member)
        args: list[str | int] = [claim.occurrence, processor]
        return bool(await self._run("mark_done", instance=instance, keys=keys, args=args, durable=True))

    async def renew(self, instance: str, claims: Sequence[tuple[str, int]], lease_ms: int) -> int:
        """Extend the leases of (member, occurrence) pairs still being processed."""
        args: list[str | int] = [lease_ms]
        for member, occ in claims:
            args += [member, occ]
        return int(await self._run("renew", instance=instance, args=args))

    async def disarm(self, from_ms: int, until_ms: int, *, page: int = 5000) -> int:
        """Delete trigger keys of entries due in (from_ms, until_ms] before they expire."""
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
        looked, score, member, more = await self._run("disarm", args=args)
        return int(looked), DisarmCursor(int(score), member) if int(more) else None

    async def repair(self, members: Sequence[str]) -> int:
        """Re-create missing trigger keys of future index entries; how many were re-created."""
        return int(await self._run("repair", args=list(members)))
