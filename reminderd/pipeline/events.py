"""The event batches: keys of expired, expire and del events, each taken to the store in batches.

Events are hints, never orders. An expired event's key is claimed only if the index or the
key's own state says it is due (``claim_keys.lua``); an expire event's key is adopted at
its real expiry, or its indexed due time follows the moved TTL (``adopt.lua``); a del
event's key cancels a raw reminder only if the key is really gone (``forget.lua``). What a
claim did instead of claiming comes back as notes (``records.Note``), reported here:
nothing is dropped without a count, and a reminder that is lost says so with its key.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from functools import cache
from itertools import islice, takewhile

import structlog
from redis.exceptions import RedisError

from reminderd.config.model import RuleSettings
from reminderd.core.trigger_keys import MAX_KEY_BYTES, TriggerKey, parse_key
from reminderd.pipeline.clock import RedisClock
from reminderd.pipeline.dispatch import Dispatcher
from reminderd.pipeline.hints import Hints, KeyQueue
from reminderd.pipeline.runtime import Context
from reminderd.storage.records import Adoption, Note

log = structlog.get_logger("reminderd.pipeline.events")
EVENT_BATCH = 500
ADOPT_BATCH = 1000
RETRY_S = 0.2  # a failed batch stays queued and is tried again after this pause
DEFER_SHARE = 0.4  # of raw_dedupe_window: how long an expired event leaves a backlog to the sweep
_Once = Callable[[], Awaitable[int]]


@cache
def _longest_first(prefixes: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted(prefixes, key=len, reverse=True))


def trigger_rule(key: str, prefixes: tuple[str, ...]) -> str:
    """The rule of trigger key ``key``, '' when it is none (``parse_key``'s verdict).

    Every event and every key of a full adoption pass is parsed, millions of them: a
    printable ASCII name without spaces is decided here at a fraction of the cost (it
    cannot carry a control character, bad UTF-8 or stray whitespace); any other name goes
    to ``parse_key``.
    """
    if key.isascii() and key.isprintable() and " " not in key and len(key) <= MAX_KEY_BYTES:
        for prefix in _longest_first(prefixes):
            if key.startswith(prefix) and key[len(prefix) : len(prefix) + 1] == "-":
                user, sep, type_ = key[len(prefix) + 1 :].rpartition("-")
                return prefix if sep and type_ and user.strip("-") else ""
        return ""
    parsed = parse_key(key, prefixes)
    return parsed.rule if isinstance(parsed, TriggerKey) else ""


def rule_of(ctx: Context, key: str) -> str:
    """The rule of trigger key ``key`` ('' when it parses as none: then it is not a reminder)."""
    return trigger_rule(key, ctx.settings.prefixes)


def report_notes(ctx: Context, notes: Iterable[tuple[str, Note]], lost_reason: dict[str, str]) -> None:
    """Log and count what claims did instead of claiming; ``lost_reason``: why, per lost key."""
    for key, note in notes:
        rule = rule_of(ctx, key)
        ctx.metrics.raw_outcome(rule, note.value)
        if note is Note.WITHDRAWN:
            log.info("reminder.withdrawn", key=key, rule=rule, reason="no_expiry")
        elif note is Note.ALIVE:
            ctx.metrics.adopted(rule)
            log.info("reminder.adopted", key=key, rule=rule, source="expired_event_for_live_key")
        elif note is Note.OVERSIZED:
            report_oversized(ctx, [key])
        elif note is Note.LOST:
            ctx.metrics.lost(rule)
            log.warning("reminder.lost", key=key, rule=rule, reason=lost_reason.get(key, "unknown"))


def report_oversized(ctx: Context, keys: Iterable[str]) -> None:
    """Raw values above the payload limit were dead-lettered and their keys deleted."""
    limit = ctx.settings.limits.payload_max_bytes
    for key in keys:
        ctx.metrics.dead_lettered(rule_of(ctx, key))
        log.error("reminder.dead_lettered", key=key, reason="payload_too_large", limit_bytes=limit)


def report_adoption(ctx: Context, found: Adoption, rule: str, source: str) -> None:
    """Count (and, when any were adopted, log once) what one adoption call found."""
    if found.adopted:
        ctx.metrics.adopted(rule, found.adopted)
        log.info("reminder.adopted", count=found.adopted, rule=rule or None, source=source)
    if found.moved:
        ctx.metrics.raw_outcome(rule, "moved", found.moved)
    report_oversized(ctx, found.oversized)


class EventBatches:
    """Takes the keys the subscriber queued in ``Hints`` to the store, batch by batch."""

    def __init__(self, ctx: Context, hints: Hints, dispatcher: Dispatcher, clock: RedisClock) -> None:
        self.ctx = ctx
        self.hints = hints
        self.dispatcher = dispatcher
        self.clock = clock

    async def run(self) -> None:
        """Drain the three queues as events arrive; forever."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(_drain(self.hints.expired, self.claim_expired_once))
            tg.create_task(_drain(self.hints.written, self.adopt_written_once))
            tg.create_task(_drain(self.hints.deleted, self.forget_deleted_once))

    async def claim_expired_once(self) -> int:
        """Claim one batch of expired-event keys (waiting for a free slot); how many were claimed."""
        capacity = self.dispatcher.capacity
        await capacity.room(1)
        batch = self._ready(min(EVENT_BATCH, capacity.free()))
        if not batch:  # a sweep claimed them while we waited for room, or they wait for it
            await self._wait_for_sweep()
            return 0
        fire, hold, reasons = self._split(batch)
        claims = []
        try:
            for keys, fire_unseen in ((fire, True), (hold, False)):
                if keys:
                    got = await self.ctx.store.claim_keys(
                        self.ctx.instance,
                        keys,
                        lease_ms=self.ctx.settings.daemon.lease_ms,
                        fire_unseen=fire_unseen,
                        payload_max_bytes=self.ctx.settings.limits.payload_max_bytes,
                    )
                    self.clock.observe(got.now_ms)
                    claims += got.claims
                    report_notes(self.ctx, got.notes, reasons)
        except RedisError as exc:
            return await _failed("redis.claim_failed", exc, batch)
        for key in batch:
            self.hints.expired.pop(key, None)
        return self.dispatcher.submit(claims, "event")

    def _defer_s(self) -> float:
        """How long an expired event waits for the sweep while the index holds a backlog:
        ``DEFER_SHARE`` of ``raw_dedupe_window``, short of the half that makes it stale
        (``_split``), so a key never seen alive is still claimed from a fresh event."""
        return self.ctx.settings.daemon.raw_dedupe_window_ms * DEFER_SHARE / 1000

    def _ready(self, limit: int) -> list[str]:
        """Up to ``limit`` queued keys to claim from their events, oldest first.

        While the sweep's claims come back full, the index holds more due work than this
        daemon runs, and the sweep claims it in due order (dropping each claimed key's queued
        event). In a burst of raw keys, Redis expires them all within about a second and their
        events would claim the same keys a second way, in competition with the sweep, each
        one read, queued, packed and sent: measured, that made a 100,000 raw burst drain a
        fifth slower. So during a backlog an event is claimed only after ``_defer_s``: what
        is still queued then is a key the index does not hold (never seen alive) or one the
        sweep has not reached yet, both claimed as before. A key whose write had not been
        adopted when it expired (``Hints.unadopted``) is not in the index: claimed at once.
        """
        queued, unadopted = self.hints.expired, self.hints.unadopted
        if not self.hints.backlog:
            unadopted.clear()
            return list(islice(queued, limit))
        batch: list[str] = []
        while unadopted and len(batch) < limit:
            key = unadopted.pop()
            if key in queued:
                batch.append(key)
        cutoff = time.monotonic() - self._defer_s()
        aged = takewhile(lambda key: queued[key] <= cutoff, queued)
        chosen = set(batch)
        batch += islice((key for key in aged if key not in chosen), limit - len(batch))
        return batch

    async def _wait_for_sweep(self) -> None:
        """Wait until the backlog ends, a key not in the index is queued, or the oldest queued
        event has waited ``_defer_s``."""
        hints, queued = self.hints, self.hints.expired
        hints.urgent.clear()
        if not (hints.backlog and queued) or hints.unadopted:
            return
        oldest = queued[next(iter(queued))]
        wait_s = oldest + self._defer_s() - time.monotonic()
        if wait_s > 0:
            waits = [asyncio.ensure_future(event.wait()) for event in (hints.caught_up, hints.urgent)]
            try:
                await asyncio.wait(waits, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()

    def _split(self, batch: list[str]) -> tuple[list[str], list[str], dict[str, str]]:
        """(fire, hold, reasons): which record-less gone keys may fire on their event alone.

        Not those of a rule with ``unseen_raw: never``, nor a stale event's: a finished
        one-shot leaves its fired ledger for ``raw_dedupe_window``, and an event read later
        than that (a backlog queues events for many seconds) would find neither record nor
        ledger and fire the reminder again. Half the window leaves room for the gap between
        the completion and the event's arrival. A held key that cannot be proven is noted lost.
        """
        settings = self.ctx.settings
        oldest_fresh = time.monotonic() - settings.daemon.raw_dedupe_window_ms / 2000
        never = _never_rules(settings.rules)  # none by default: then no key needs parsing here
        fire, hold, reasons = [], [], {}
        queued = self.hints.expired
        for key in batch:
            if queued[key] < oldest_fresh:
                reasons[key] = "stale_event"
            elif never and rule_of(self.ctx, key) in never:
                reasons[key] = "unseen_raw_never"
            else:
                fire.append(key)
                continue
            hold.append(key)
        return fire, hold, reasons

    async def adopt_written_once(self) -> int:
        """Adopt one batch of keys written with a TTL (or follow their moved TTL); how many adopted."""
        batch = list(islice(self.hints.written, ADOPT_BATCH))
        try:
            found = await self.ctx.store.raw.adopt(
                batch, payload_max_bytes=self.ctx.settings.limits.payload_max_bytes
            )
        except RedisError as exc:
            return await _failed("redis.adopt_failed", exc, batch)
        for key in batch:
            self.hints.written.pop(key, None)
        report_adoption(self.ctx, found, "", "expire_event")
        return found.adopted

    async def forget_deleted_once(self) -> int:
        """Cancel the raw reminders of one batch of deleted keys; how many were cancelled."""
        batch = list(islice(self.hints.deleted, ADOPT_BATCH))
        # A key whose occurrence runs here has a lock, and forget cancels nothing under a
        # lock: these are nearly all our own claims' deletes, and need no round trip.
        held = self.dispatcher.capacity.holds
        asked = [key for key in batch if not held(key)]
        try:
            cancelled = await self.ctx.store.raw.forget(asked) if asked else []
        except RedisError as exc:
            return await _failed("redis.forget_failed", exc, batch)
        for key in batch:
            self.hints.deleted.pop(key, None)
        for key in cancelled:
            rule = rule_of(self.ctx, key)
            self.ctx.metrics.raw_outcome(rule, "cancelled")
            log.info("reminder.cancelled", key=key, rule=rule, reason="deleted")
        return len(cancelled)


def _never_rules(rules: Mapping[str, RuleSettings]) -> frozenset[str]:
    """The rules whose raw keys never seen alive are not fired on their event alone."""
    return frozenset(name for name, rule in rules.items() if rule.unseen_raw == "never")


async def _drain(queue: KeyQueue, once: _Once) -> None:
    """Run ``once`` while ``queue`` holds keys, then wait for the next; forever."""
    while True:
        await queue.ready.wait()
        queue.ready.clear()
        while queue:
            await once()
            raise_if_cancelled()


def raise_if_cancelled() -> None:
    """Re-raise a cancellation that redis-py swallowed.

    redis-py 8.1 (asyncio) sometimes loses a CancelledError delivered while a command is in
    flight (about one cancel in six while a script reply is being read, measured against a
    private redis-server). A loop cancelled at shutdown then runs on, and the daemon never
    exits on SIGTERM. ``Task.cancelling()`` still remembers the request.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def _failed(event: str, exc: RedisError, batch: list[str]) -> int:
    """A batch Redis refused: said once, left in its queue, tried again after ``RETRY_S``."""
    log.warning(event, error=str(exc), keys=len(batch))
    await asyncio.sleep(RETRY_S)
    return 0
