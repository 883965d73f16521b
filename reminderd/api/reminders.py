"""The Python API: schedule, reschedule, cancel, get and list reminders (asyncio).

The synchronous facade is ``reminderd.api.sync.Reminders``.

Scheduling a key that already has a reminder replaces it atomically (payload, schedule,
due time; its occurrence numbering continues so idempotency keys never repeat);
``only_if_absent=True`` gives ``SET NX`` semantics instead and returns None when the key
(a reminder or a raw trigger key) already exists.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis

from reminderd.api.payloads import check_interval, checked_payload
from reminderd.config.model import Settings
from reminderd.core.recurrence import first_due_ms, validate_schedule
from reminderd.core.schedules import Cron, Every, Once, Schedule
from reminderd.core.trigger_keys import Rejection, format_key, parse_key
from reminderd.errors import KeyNameError, NotFoundError, ScheduleError
from reminderd.models import Misfire, Reminder
from reminderd.storage.cluster import layout_for
from reminderd.storage.records import RecordField, decode_payload
from reminderd.storage.store import ScheduleRequest, Store, key_of

Instant = datetime | int  # aware datetime, or epoch milliseconds
Span = timedelta | int  # timedelta, or milliseconds


@dataclass(frozen=True, slots=True)
class When:
    """A schedule request before it is resolved against Redis's clock."""

    at: Instant | None = None
    in_: Span | None = None
    every: Span | None = None
    cron: str | None = None
    tz: str = "UTC"


_ONE_MS = timedelta(milliseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ms(span: Span) -> int:
    """Whole milliseconds in integer arithmetic: float seconds would turn 1.001 s into 1000 ms."""
    return span // _ONE_MS if isinstance(span, timedelta) else int(span)


def _instant_ms(at: Instant) -> int:
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise ScheduleError("at must be timezone-aware (e.g. datetime.now(UTC))")
        return (at - _EPOCH) // _ONE_MS
    return int(at)


def resolve(when: When, now_ms: int) -> tuple[Schedule, int]:
    """The schedule and its first due time; raises ScheduleError for impossible combinations."""
    if when.at is not None and when.in_ is not None:
        raise ScheduleError("give either at or in, not both")
    start = _instant_ms(when.at) if when.at is not None else None
    if when.in_ is not None:
        if _ms(when.in_) < 0:
            raise ScheduleError("in must not be negative")
        start = now_ms + _ms(when.in_)
    if start is not None:
        validate_schedule(Once(start))
    if when.cron is not None and when.every is not None:
        raise ScheduleError("give either every or cron, not both")
    schedule: Schedule
    if when.cron is not None:
        schedule = Cron(when.cron, when.tz)
        validate_schedule(schedule)
        return schedule, first_due_ms(schedule, (start if start is not None else now_ms) - 1)
    if when.every is not None:
        interval = _ms(when.every)
        schedule = Every(interval, start if start is not None else now_ms + interval)
        validate_schedule(schedule)
        return schedule, schedule.anchor_ms
    if start is None:
        raise ScheduleError("a schedule needs one of at, in, every or cron")
    return Once(start), start


class AsyncReminders:
    """Schedule and inspect reminders; share one instance per process."""

    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        self.settings = settings
        self.store = Store(redis, layout_for(settings, redis))  # sharded on Cluster

    def key_for(self, key: str | None, user: str | None, type_: str | None, rule: str | None) -> str:
        """Resolve a key from either a full key or user/type(/rule) parts; validates it."""
        if key is not None:
            if user is not None or type_ is not None:
                raise KeyNameError("give either a key or user and type, not both")
            parsed = parse_key(key, self.settings.prefixes)
            if isinstance(parsed, Rejection):
                raise parsed.error()
            return key
        if user is None or type_ is None:
            raise KeyNameError("give a key, or both user and type")
        rule = rule or next(iter(self.settings.rules))
        if rule not in self.settings.rules:
            raise KeyNameError(f"unknown rule {rule!r} (configured: {', '.join(self.settings.rules)})")
        return format_key(rule, user, type_)

    async def schedule(
        self,
        key: str | None = None,
        *,
        user: str | None = None,
        type: str | None = None,
        rule: str | None = None,
        payload: Mapping[str, Any] | str | None = None,
        when: When,
        misfire: Misfire | None = None,
        only_if_absent: bool = False,
    ) -> Reminder | None:
        """Schedule (or replace) one reminder; None if ``only_if_absent`` found one."""
        name = self.key_for(key, user, type, rule)
        req = await self._request(name, payload, when, misfire, only_if_absent)
        occ = await self.store.schedule(req)
        return None if occ is None else self._written(req, occ)

    async def _request(
        self, name: str, payload: Any, when: When, misfire: Misfire | None, only_if_absent: bool
    ) -> ScheduleRequest:
        encoded = checked_payload(payload, self.settings.limits)
        schedule, due = resolve(when, await self.store.now_ms())
        check_interval(schedule, self.settings.limits)
        return ScheduleRequest(name, due, schedule, encoded, misfire, only_if_absent)

    def _written(self, req: ScheduleRequest, occurrence: int) -> Reminder:
        """The reminder as the script wrote it, never re-read: a daemon may fire it at once.

        Reading it back afterwards would report a one-shot that already fired as absent.
        """
        return self._fill(
            Reminder(
                key=req.key, rule="", user_id="", type="", payload=decode_payload(req.payload_json),
                schedule=req.schedule, due_at_ms=req.due_at_ms, occurrence=occurrence, attempt=0,
                misfire=req.misfire or Misfire.FIRE_ONCE,
            )
        )  # fmt: skip

    async def schedule_many(self, items: Iterable[tuple[str, Mapping[str, Any] | None, When]]) -> int:
        """Bulk-schedule ``(key, payload, when)`` items with pipelined scripts; how many written."""
        now = await self.store.now_ms()
        limits = self.settings.limits
        reqs = []
        for name, payload, when in items:
            self.key_for(name, None, None, None)
            schedule, due = resolve(when, now)
            check_interval(schedule, limits)
            encoded = "" if payload is None else checked_payload(payload, limits)
            reqs.append(ScheduleRequest(name, due, schedule, encoded))
        return await self.store.schedule_many(reqs)

    async def reschedule(
        self, key: str, *, when: When, payload: Mapping[str, Any] | str | None = None
    ) -> Reminder:
        """Change an existing reminder's schedule (and payload if given); NotFoundError if absent."""
        current = await self.get(key)
        if current is None:
            raise NotFoundError(f"no reminder {key!r}")
        new_payload = current.payload if payload is None else payload
        req = await self._request(key, new_payload, when, await self._own_misfire(key), False)
        occ = await self.store.schedule(req)
        assert occ is not None  # only_if_absent is off: the script always writes
        return self._written(req, occ)

    async def _own_misfire(self, key: str) -> Misfire | None:
        """The reminder's own misfire policy; None when it follows its rule's default.

        ``Reminder.misfire`` shows the default filled in, so passing it back would pin
        ``fire_once`` on a reminder whose rule says otherwise.
        """
        record = self.store.layout.names_of(key).record(key)
        raw: str | None = await self.store.redis.hget(record, RecordField.MISFIRE)  # type: ignore[assignment]
        return Misfire(raw) if raw else None

    async def cancel(self, key: str) -> bool:
        """Cancel a reminder; False if there was none."""
        self.key_for(key, None, None, None)
        return await self.store.cancel(key)

    async def get(self, key: str) -> Reminder | None:
        """The reminder stored for ``key``, or None."""
        found = await self.store.get(key)
        return None if found is None else self._fill(found)

    def _fill(self, reminder: Reminder) -> Reminder:
        parsed = parse_key(reminder.key, self.settings.prefixes)
        if isinstance(parsed, Rejection):
            return reminder
        return replace(reminder, rule=parsed.rule, user_id=parsed.user_id, type=parsed.type)

    async def list(
        self,
        *,
        due_before: Instant | None = None,
        user: str | None = None,
        type: str | None = None,
        rule: str | None = None,
        limit: int = 100,
    ) -> list[Reminder]:
        """Reminders by due time, optionally filtered; filters scan the index in pages."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        max_ms: float = _instant_ms(due_before) if due_before is not None else float("inf")
        found: list[Reminder] = []
        start, page = 0, 1000
        while len(found) < limit:
            rows = [(m, due) for m, due in await self.store.index_page(start, page) if due <= max_ms]
            if not rows:
                break
            start += page
            wanted = [m for m, _ in rows if self._matches(key_of(m), user, type, rule)]
            for rem in await self.store.get_many(wanted):
                if rem is not None and len(found) < limit:
                    found.append(self._fill(rem))
        return found

    def _matches(self, key: str, user: str | None, type_: str | None, rule: str | None) -> bool:
        if user is None and type_ is None and rule is None:
            return True
        parsed = parse_key(key, self.settings.prefixes)
        if isinstance(parsed, Rejection):
            return False
        return (
            (user is None or parsed.user_id == user)
            and (type_ is None or parsed.type == type_)
            and (rule is None or parsed.rule == rule)
        )
