"""Every reminder state change, each one atomic Lua script called by SHA.

The store knows Redis and the data model (``docs/ARCHITECTURE.md``) and nothing about
rules or processors: the pipeline decides, the store applies. All due checks inside the
scripts use Redis ``TIME``, never the host clock. The scripts share one prelude and one
calling convention (``reminderd.storage.scripts``). The layout (``storage/layout.py``)
says how many shards hold the data and whether the scripts write trigger keys themselves
(one Redis) or the store does it around them (Cluster: ``storage/triggers.py``); the
facade groups members by shard (``storage/shards.py``) and merges the replies, so the
pipeline sees one store either way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

import redis.asyncio as aioredis

from reminderd.core.schedules import Once, Schedule, schedule_to_json
from reminderd.models import Misfire
from reminderd.storage import claims
from reminderd.storage.durability import Durability
from reminderd.storage.layout import Layout
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
)
from reminderd.storage.scripts import Scripts
from reminderd.storage.shards import Shards
from reminderd.storage.upkeep import DisarmCursor, Upkeep
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


def _schedule_json(schedule: Schedule) -> str:
    return "" if isinstance(schedule, Once) else schedule_to_json(schedule)


def _misfire(misfire: Misfire | None) -> str:
    return misfire.value if misfire else ""


class Store(Reads, Upkeep):
    """Reminder state in Redis. Construct cheaply; scripts load lazily by SHA (reading: ``Reads``).

    ``layout``: a ``Layout``, or the ``Names`` of a namespace for the single layout.
    """

    def __init__(
        self, redis: aioredis.Redis, layout: Layout | Names, durability: Durability | None = None
    ) -> None:
        self.redis = redis
        self.layout = layout if isinstance(layout, Layout) else Layout.single(layout.namespace)
        self.names = self.layout.names  # the daemon-wide names (a shard's: layout.names_of)
        self.durability = durability  # redis.wait_replicas: claims and finishes WAIT for replicas
        self.shards = Shards(redis, self.layout, durability)
        self.raw = RawKeys(redis, self.shards, DEAD_MAXLEN)

    def _run(self, member: str) -> Scripts:
        return self.shards.of(member)

    # -- scheduling -----------------------------------------------------------------

    async def schedule(self, req: ScheduleRequest) -> int | None:
        """Write one reminder; the occurrence number, or None if ``only_if_absent`` found one."""
        head: list[str | int] = [req.key, req.due_at_ms, "", req.payload_json]
        flag = "1" if req.only_if_absent else "0"
        args = [*head, _schedule_json(req.schedule), _misfire(req.misfire), flag, "", "", ""]
        run = self._run(req.key)
        keys = run.reminder_keys(req.key)
        if self.shards.inline:
            written, occ = await run("schedule", keys=keys, args=args)
        else:
            outside = await self.shards.peek([req.key]) if req.only_if_absent else None
            (written, occ), arms = await run.call("schedule", keys=keys, args=args, outside=outside)
            await self.shards.triggers.arm(arms)
        return int(occ) if written else None

    async def replay(self, req: ReplayRequest) -> None:
        """Schedule a dead letter again as a one-shot, deleting the dead letter in the same step."""
        head: list[str | int] = [req.member, req.due_at_ms, req.nominal_ms, req.payload_json, "", ""]
        args = [*head, "0", DONE_SEP.join(req.done), req.occurrence, req.dead_id]
        run = self._run(req.member)
        await run("schedule", keys=run.reminder_keys(req.member), args=args)  # auxiliary: no trigger key

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
        """One script call a shard for the whole chunk, packed into one argument (``records.pack_items``)."""
        if self.shards.inline:
            return int(await self.shards.scripts[0]("schedule_many", args=[pack_items(reqs)]))
        absent = await self.shards.peek(r.key for r in reqs if r.only_if_absent)

        async def one(run: Scripts, idx: list[int]) -> int:
            mine = [reqs[i] for i in idx]
            state = None if absent is None else {r.key: absent[r.key] for r in mine if r.key in absent}
            written, arms = await run.call("schedule_many", args=[pack_items(mine)], outside=state)
            await self.shards.triggers.arm(arms)
            return int(written)

        return sum(n for _, n in await self.shards.each([r.key for r in reqs], one))

    async def cancel(self, key: str) -> bool:
        """Remove a reminder entirely, its pending replays included; True if anything existed."""
        run, names = self._run(key), self.layout.names_of(key)
        while True:
            aux = sorted(str(m) for m in await self.redis.smembers(names.aux(key)))
            keys = run.reminder_keys(key)
            for member in aux:
                keys += [names.record(member), names.lock(member)]
            found = int(await run("cancel", keys=keys, args=[key, *aux]))
            if found >= 0:  # else a replay was added since the set was read
                if not self.shards.inline:  # the shard's tombstone is written: the key goes now
                    found = max(found, await self.shards.triggers.delete([key]))
                return found == 1

    # -- the pipeline's steps -------------------------------------------------------

    async def claim_due(self, instance: str, *, limit: int, lease_ms: int) -> Claimed:
        """Claim up to ``limit`` due occurrences from the index (raw ones only once their key is gone)."""
        return await claims.claim_due(self.shards, instance, limit, lease_ms)

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
        args: list[str | int] = [lease_ms, flag, payload_max_bytes, DEAD_MAXLEN]
        return await claims.claim_keys(self.shards, instance, members, args)

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
        window: str | int = "" if window_ms is None else window_ms
        if self.shards.inline:  # the single layout: one call, as it always was
            args = [window, DEAD_MAXLEN, *finish_args(items)]
            return [int(x) for x in await self.shards.scripts[0]("finish", instance=instance, args=args)]
        ending = await self.shards.triggers.peek(_ending(items))  # a raw one alive again: RESET

        async def one(run: Scripts, idx: list[int]) -> list[int]:
            mine = [items[i] for i in idx]
            state = {i.member: ending[i.member] for i in mine if i.member in ending}
            args = [window, DEAD_MAXLEN, *finish_args(mine)]
            reply, arms = await run.call("finish", instance=instance, args=args, outside=state)
            await self.shards.triggers.arm(arms)
            return [int(x) for x in reply]

        results = [0] * len(items)
        for idx, reply in await self.shards.each([i.member for i in items], one):
            for at, x in zip(idx, reply, strict=True):
                results[at] = x
        return results

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
        run = self._run(claim.member)
        args: list[str | int] = [claim.occurrence, processor]
        return bool(
            await run("mark_done", instance=instance, keys=run.reminder_keys(claim.member), args=args)
        )

    async def renew(self, instance: str, claims: Sequence[tuple[str, int]], lease_ms: int) -> int:
        """Extend the leases of (member, occurrence) pairs still being processed."""
        if not claims:
            return 0

        async def one(run: Scripts, idx: list[int]) -> int:
            args: list[str | int] = [lease_ms]
            for i in idx:
                args += [claims[i][0], claims[i][1]]
            return int(await run("renew", instance=instance, args=args))

        return sum(n for _, n in await self.shards.each([m for m, _ in claims], one))


def _ending(items: Sequence[FinishItem]) -> list[str]:
    """Members whose verdict may end a one-shot (a raw one's key alive again means RESET)."""
    return [
        i.member
        for i in items
        if isinstance(i, Completion | DeadLetterRequest)
        and i.next_due_ms is None
        and i.member == key_of(i.member)
    ]
