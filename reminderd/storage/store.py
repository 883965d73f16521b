"""Every reminder state change, each one atomic Lua script called by SHA.

The store knows Redis and the data model (``docs/ARCHITECTURE.md``) and nothing about
rules or processors: the pipeline decides, the store applies. All due checks inside the
scripts use Redis ``TIME``, never the host clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from importlib import resources

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from reminderd.core.schedules import Once, schedule_to_json
from reminderd.models import Reminder
from reminderd.storage.names import Names
from reminderd.storage.records import (
    AUX_SEP,
    Claim,
    Completion,
    Deferral,
    Failure,
    Finishes,
    ScheduleRequest,
    decode_payload,
    encode_payload,
    key_of,
    parse_claims,
    reminder_from_fields,
)

__all__ = [
    "AUX_SEP",
    "Claim",
    "Completion",
    "Deferral",
    "Failure",
    "Finishes",
    "ScheduleRequest",
    "Store",
    "decode_payload",
    "encode_payload",
    "key_of",
]

SCRIPT_NAMES = (
    "schedule",
    "claim",
    "complete",
    "fail",
    "mark_done",
    "defer",
    "renew",
    "cancel",
    "adopt",
    "repair",
    "disarm",
    "schedule_many",
)


_SCRIPTS = resources.files("reminderd.storage.scripts")


class Store:
    """Reminder state in Redis. Construct cheaply; scripts load lazily by SHA."""

    def __init__(self, redis: aioredis.Redis, names: Names, *, fired_window_ms: int = 60_000) -> None:
        self.redis = redis
        self.names = names
        self.fired_window_ms = fired_window_ms
        self._scripts: dict[str, AsyncScript] = {
            name: redis.register_script(
                resources.files("reminderd.storage.scripts").joinpath(f"{name}.lua").read_text()
            )
            for name in SCRIPT_NAMES
        }

    # -- scheduling -----------------------------------------------------------------

    def _schedule_args(
        self, req: ScheduleRequest, *, member: str | None = None, **extra: str
    ) -> tuple[list[str], list[str | int]]:
        m = member or req.key
        keys = [req.key if member is None else "", self.names.record(m), self.names.due]
        sched = "" if isinstance(req.schedule, Once) else schedule_to_json(req.schedule)
        args: list[str | int] = [
            m,
            req.due_at_ms,
            extra.get("nominal", ""),
            req.payload_json,
            sched,
            req.misfire.value if req.misfire else "",
            "1" if req.only_if_absent else "0",
            self.names.wake,
            self.names.namespace,
            extra.get("done", ""),
            extra.get("occurrence", ""),
            extra.get("dead_id", ""),
        ]
        return keys, args

    async def schedule(self, req: ScheduleRequest) -> int | None:
        """Write one reminder; the occurrence number, or None if ``only_if_absent`` found one."""
        keys, args = self._schedule_args(req)
        written, occ = await self._scripts["schedule"](keys=keys, args=args)
        return int(occ) if written else None

    async def schedule_many(self, reqs: Iterable[ScheduleRequest], *, chunk: int = 1000) -> int:
        """Write many reminders with pipelined script calls; returns how many were written."""
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
        """One script call for the whole chunk: per-call overhead, not Redis, bounds bulk writes."""
        args: list[str | int] = [self.names.namespace, self.names.wake]
        for req in reqs:
            sched = "" if isinstance(req.schedule, Once) else schedule_to_json(req.schedule)
            args += [
                req.key,
                req.due_at_ms,
                req.payload_json,
                sched,
                req.misfire.value if req.misfire else "",
                "1" if req.only_if_absent else "0",
            ]
        return int(await self._scripts["schedule_many"](keys=[self.names.due], args=args))

    async def replay(
        self,
        key: str,
        *,
        tag: str,
        due_at_ms: int,
        nominal_ms: int,
        occurrence: int,
        payload_json: str,
        done: str,
        dead_id: str,
        aux: bool,
    ) -> None:
        """Schedule a dead letter again as a one-shot, deleting the dead letter in the same step."""
        member = f"{key}{AUX_SEP}{tag}" if aux else None
        req = ScheduleRequest(
            key=key, due_at_ms=due_at_ms, schedule=Once(due_at_ms), payload_json=payload_json
        )
        keys, args = self._schedule_args(
            req,
            member=member,
            nominal=str(nominal_ms),
            done=done,
            occurrence=str(occurrence),
            dead_id=dead_id,
        )
        await self._scripts["schedule"](keys=keys, args=args)

    async def cancel(self, key: str) -> bool:
        """Remove a reminder entirely; True if anything existed."""
        keys = [key, self.names.record(key), self.names.due]
        return bool(await self._scripts["cancel"](keys=keys, args=[key, self.names.namespace]))

    # -- reading --------------------------------------------------------------------

    async def get(self, key: str) -> Reminder | None:
        """The stored reminder for ``key`` (rule, user and type are filled by the caller)."""
        fields: dict[str, str] = await self.redis.hgetall(self.names.record(key))  # type: ignore[assignment]
        return reminder_from_fields(key, fields) if fields else None

    async def get_many(self, members: Sequence[str]) -> list[Reminder | None]:
        """Records of many index members in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for m in members:
                pipe.hgetall(self.names.record(m))
            rows: list[dict[str, str]] = await pipe.execute()
        return [reminder_from_fields(m, f) if f else None for m, f in zip(members, rows, strict=True)]

    async def index_page(self, start: int, count: int) -> list[tuple[str, int]]:
        """Index entries by rank ``start`` .. ``start + count - 1``, earliest due first.

        Paging by rank costs O(log N) per page; ``ZRANGEBYSCORE ... LIMIT offset`` would
        walk ``offset`` entries each time, quadratic over a large index.
        """
        rows: list[tuple[str, float]] = await self.redis.zrange(
            self.names.due, start, start + count - 1, withscores=True
        )  # type: ignore[assignment]
        return [(m, int(s)) for m, s in rows]

    async def rank_after(self, ms: int) -> int:
        """The rank of the first index entry due after ``ms``."""
        return int(await self.redis.zcount(self.names.due, "-inf", ms))

    async def scan_trigger_keys(self, cursor: int, pattern: str, count: int) -> tuple[int, list[str]]:
        """One SCAN step over string keys matching ``pattern`` (raw trigger keys to adopt)."""
        cursor, keys = await self.redis.scan(cursor, match=pattern, count=count, _type="string")
        return int(cursor), [str(k) for k in keys]

    async def hash_fields(self, wanted: Mapping[str, Sequence[str]]) -> dict[str, dict[str, str]]:
        """Fields of hashes outside the namespace (user lookup hashes) in one round trip.

        ``wanted`` maps a hash to the fields to read; the reply maps it to those present.
        """
        async with self.redis.pipeline(transaction=False) as pipe:
            for key, fields in wanted.items():
                pipe.hmget(key, list(fields))
            rows: list[list[str | None]] = await pipe.execute()
        return {
            key: {f: str(v) for f, v in zip(fields, row, strict=True) if v is not None}
            for (key, fields), row in zip(wanted.items(), rows, strict=True)
        }

    async def counts(self, now_ms: int) -> tuple[int, int]:
        """(scheduled, due now) from the index."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self.names.due)
            pipe.zcount(self.names.due, "-inf", now_ms)
            total, due = await pipe.execute()
        return int(total), int(due)

    async def next_due(self) -> tuple[str, int] | None:
        """The earliest index entry."""
        rows: list[tuple[str, float]] = await self.redis.zrange(self.names.due, 0, 0, withscores=True)  # type: ignore[assignment]
        return (rows[0][0], int(rows[0][1])) if rows else None

    async def now_ms(self) -> int:
        """Redis's clock in epoch milliseconds."""
        sec, usec = await self.redis.time()
        return int(sec) * 1000 + int(usec) // 1000

    # -- the pipeline's steps -------------------------------------------------------

    async def claim_due(self, instance: str, *, limit: int, lease_ms: int) -> tuple[int, list[Claim]]:
        """Claim up to ``limit`` due occurrences from the index; (redis now, claims)."""
        args: list[str | int] = ["due", limit, lease_ms, instance, self.names.namespace, "0"]
        return parse_claims(await self._scripts["claim"](keys=[self.names.due], args=args))

    async def claim_keys(
        self, instance: str, members: Sequence[str], *, lease_ms: int, adopt_raw: bool
    ) -> tuple[int, list[Claim]]:
        """Claim the given members if due (expired events); raw keys get a record if allowed."""
        args = [
            "keys",
            len(members),
            lease_ms,
            instance,
            self.names.namespace,
            "1" if adopt_raw else "0",
            *members,
        ]
        return parse_claims(await self._scripts["claim"](keys=[self.names.due], args=args))

    async def complete_many(self, instance: str, items: Sequence[Completion], *, stat: str = "fired") -> int:
        """Apply completions in one script call; returns how many were still ours."""
        args = self._complete_args(instance, items, stat)
        return int(await self._scripts["complete"](keys=[self.names.due], args=args))

    def _complete_args(self, instance: str, items: Sequence[Completion], stat: str) -> list[str | int]:
        args: list[str | int] = [self.names.namespace, instance, self.fired_window_ms, stat]
        for item in items:
            args += [item.member, item.occurrence, "" if item.next_due_ms is None else item.next_due_ms]
        return args

    async def fail(
        self,
        instance: str,
        claim: Claim,
        *,
        retry_at_ms: int | None,
        error: str,
        done: Sequence[str],
        next_due_ms: int | None,
        reason: str,
        pending: Sequence[str],
        dead_maxlen: int = 100_000,
    ) -> int:
        """Retry later or dead-letter; 0 not ours, 1 retry scheduled, 2 dead-lettered."""
        item = Failure(
            claim.member,
            claim.occurrence,
            retry_at_ms,
            error,
            tuple(done),
            next_due_ms,
            reason,
            tuple(pending),
        )
        args = self._fail_args(instance, item, dead_maxlen)
        return int(await self._scripts["fail"](keys=[self.names.due], args=args))

    def _fail_args(self, instance: str, item: Failure, dead_maxlen: int = 100_000) -> list[str | int]:
        return [
            self.names.namespace,
            instance,
            item.member,
            item.occurrence,
            "" if item.retry_at_ms is None else item.retry_at_ms,
            item.error[:2000],
            ",".join(item.done),
            "" if item.next_due_ms is None else item.next_due_ms,
            item.reason,
            ",".join(item.pending),
            dead_maxlen,
            self.fired_window_ms,
        ]

    async def mark_done(self, instance: str, claim: Claim, processor: str) -> bool:
        """Record one processor as finished for the claimed occurrence."""
        lock = self.names.lock(claim.member, claim.occurrence)
        args: list[str | int] = [claim.occurrence, processor, lock, f"{instance}|{claim.occurrence}"]
        return bool(await self._scripts["mark_done"](keys=[self.names.record(claim.member)], args=args))

    async def defer(self, instance: str, claim: Claim, until_ms: int) -> bool:
        """Move the claimed occurrence to ``until_ms`` keeping its number and nominal due."""
        keys, args = self._defer_call(instance, Deferral(claim.member, claim.occurrence, until_ms))
        return bool(await self._scripts["defer"](keys=keys, args=args))

    def _defer_call(self, instance: str, item: Deferral) -> tuple[list[str], list[str | int]]:
        keys = [self.names.record(item.member), self.names.due, self.names.lock(item.member, item.occurrence)]
        args: list[str | int] = [item.member, item.occurrence, item.until_ms, f"{instance}|{item.occurrence}"]
        return keys, args

    async def renew(self, instance: str, claims: Sequence[tuple[str, int]], lease_ms: int) -> int:
        """Extend the leases of (member, occurrence) pairs still being processed."""
        args: list[str | int] = [self.names.namespace, instance, lease_ms]
        for member, occ in claims:
            args += [member, occ]
        return int(await self._scripts["renew"](keys=[self.names.due], args=args))

    async def adopt(self, keys: Sequence[str]) -> tuple[int, int, int]:
        """Adopt raw trigger keys; (adopted, already known, not reminders)."""
        res = await self._scripts["adopt"](keys=[self.names.due], args=[self.names.namespace, *keys])
        return int(res[0]), int(res[1]), int(res[2])

    async def disarm(self, from_ms: int, until_ms: int, *, page: int = 5000) -> int:
        """Delete trigger keys of entries due in (from_ms, until_ms] before they expire."""
        total, offset = 0, 0
        while True:
            args: list[str | int] = [from_ms, until_ms, offset, page]
            n = int(await self._scripts["disarm"](keys=[self.names.due], args=args))
            total += n
            offset += n
            if n < page:
                return total

    async def repair(self, members: Sequence[str]) -> int:
        """Re-create missing trigger keys of future index entries; how many were re-created."""
        return int(
            await self._scripts["repair"](keys=[self.names.due], args=[self.names.namespace, *members])
        )

    # -- finish_many: every verdict of a batch in one round trip --------------------
    # For now a pipeline of the per-item scripts (complete, fail, defer); a single batched
    # script may replace the body without changing this interface.

    async def finish_many(self, instance: str, batch: Finishes) -> None:
        """Apply completions, skips, retries, dead letters and deferrals in one round trip.

        Each item is applied only while the occurrence is still ours, as the per-item calls
        do. A Redis error leaves it unknown which items were applied: completions, skips,
        dead letters and deferrals may be sent again (applying one twice changes nothing),
        a retry may not (it would count the attempt twice).
        """
        due = [self.names.due]
        calls: list[tuple[str, list[str], list[str | int]]] = [
            ("complete", due, self._complete_args(instance, items, stat))
            for stat, items in (("fired", batch.fired), ("skipped", batch.skipped))
            if items
        ]
        calls += [("fail", due, self._fail_args(instance, failure)) for failure in batch.failures]
        calls += [("defer", *self._defer_call(instance, deferral)) for deferral in batch.deferrals]
        if len(calls) == 1:  # the usual batch (completions only): no pipeline, no SCRIPT EXISTS
            name, keys, args = calls[0]
            await self._scripts[name](keys=keys, args=args)
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for name, keys, args in calls:
                await self._scripts[name](keys=keys, args=args, client=pipe)
            await pipe.execute()
