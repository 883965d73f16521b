"""An in-process pipeline on a private Redis, stepped by the test instead of slept on.

``running(url, config, processors)`` builds what the daemon builds (store, context, hints,
finisher, intake with its dispatcher) inside a task group; the test drives one cycle with
``step`` (claim what is due, take each claim to its verdict) or ``sweep`` (intake's own
``sweep_once``, then wait for what it started) and looks at the verdicts and at Redis.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from reminderd.config import load_config_text
from reminderd.core.schedules import Once, Schedule
from reminderd.models import Misfire, Occurrence
from reminderd.pipeline.decisions import Verdict
from reminderd.pipeline.dispatch import Dispatcher
from reminderd.pipeline.finish import Finisher
from reminderd.pipeline.hints import Hints
from reminderd.pipeline.intake import Intake
from reminderd.pipeline.runtime import Context, Runtime
from reminderd.processors.base import BatchResult, Processor
from reminderd.storage.layout import Layout
from reminderd.storage.names import Names
from reminderd.storage.records import RecordField
from reminderd.storage.server import ensure_notifications, required_flags
from reminderd.storage.store import ScheduleRequest, Store, encode_payload
from reminderd.telemetry.metrics import Metrics

INSTANCE = "test-1"
KEY = "send_message-42-daily"


class Recorder:
    """A processor that keeps every occurrence it gets and answers with its next scripted reply.

    A reply is an exception to raise or None to succeed; when the script runs out it succeeds.
    """

    def __init__(self, *replies: Exception | None) -> None:
        self.replies = list(replies)
        self.seen: list[Occurrence] = []

    async def __call__(self, occ: Occurrence) -> Mapping[str, str] | None:
        """Record ``occ``, then raise or succeed as scripted."""
        self.seen.append(occ)
        reply = self.replies.pop(0) if self.replies else None
        if reply is not None:
            raise reply
        return {"attempt": str(occ.attempt)}

    async def aclose(self) -> None:
        """Nothing to release."""


@dataclass
class Pipeline:
    """The running parts and the helpers a test steps them with."""

    redis: aioredis.Redis
    ctx: Context
    hints: Hints
    intake: Intake

    @property
    def store(self) -> Store:
        """The store the pipeline writes through."""
        return self.ctx.store

    @property
    def dispatcher(self) -> Dispatcher:
        """The dispatcher intake feeds."""
        return self.intake.dispatcher

    async def step(self, source: str = "sweep") -> list[Verdict]:
        """Claim everything due and take each claim to its written verdict; the verdicts."""
        lease_ms = self.ctx.settings.daemon.lease_ms
        claimed = await self.store.claim_due(INSTANCE, limit=1000, lease_ms=lease_ms)
        now, claims = claimed.now_ms, claimed.claims
        self.intake.clock.observe(now)
        return await self.dispatcher.step(claims, source)

    async def sweep(self) -> int:
        """One sweep by intake; returns once everything it started has its verdict."""
        claimed = await self.intake.sweep_once()
        assert await self.dispatcher.drain(10) == 0
        return claimed

    async def expired(self, *keys: str, age_s: float = 0.0) -> int:
        """Expired events for ``keys`` (queued ``age_s`` ago), claimed as one batch and taken to
        their verdicts; how many were claimed."""
        for key in keys:
            self.hints.expired[key] = time.monotonic() - age_s
        claimed = await self.intake.events.claim_expired_once()
        assert await self.dispatcher.drain(10) == 0
        return claimed

    async def raw_key(self, key: str = KEY, ttl_ms: int = 60_000, value: str = "1") -> int:
        """A producer's ``SET key value PX ttl_ms``, adopted as its expire event would be; its due ms."""
        await self.redis.set(key, value, px=ttl_ms)
        assert (await self.store.raw.adopt([key], payload_max_bytes=16_384)).adopted == 1
        due = await self.due_ms(key)
        assert due is not None
        return due

    async def come_due(self, key: str = KEY) -> None:
        """Make the indexed reminder of ``key`` due now (its key left as it is)."""
        now = await self.now_ms()
        names = self.store.layout.names_of(key)
        await self.redis.hset(names.record(key), RecordField.DUE, now - 1)
        await self.redis.zadd(names.due, {key: now - 1})

    async def schedule(
        self,
        due_ms: int,
        schedule: Schedule | None = None,
        *,
        key: str = KEY,
        payload: Mapping[str, Any] | None = None,
        misfire: Misfire | None = None,
    ) -> None:
        """Write a reminder due at ``due_ms`` (a one-shot unless ``schedule`` says otherwise)."""
        payload_json = encode_payload(payload or {}, 16_384)
        req = ScheduleRequest(key, due_ms, schedule or Once(due_ms), payload_json, misfire)
        await self.store.schedule(req)

    async def now_ms(self) -> int:
        """Redis's clock."""
        return await self.store.now_ms()

    async def record(self, key: str = KEY) -> dict[str, str]:
        """The record hash of ``key`` (empty when there is none)."""
        fields: dict[str, str] = await self.redis.hgetall(self.store.layout.names_of(key).record(key))  # type: ignore[misc]
        return fields

    async def due_ms(self, member: str = KEY) -> int | None:
        """The index score of ``member``."""
        score = await self.redis.zscore(self.store.layout.names_of(member).due, member)
        return None if score is None else int(score)

    async def stats(self) -> dict[str, int]:
        """The shared counters."""
        return await self.store.stats()

    def names(self, member: str = KEY) -> Names:
        """The names of ``member``'s shard."""
        return self.store.layout.names_of(member)

    async def index_size(self) -> int:
        """Entries in the index, over every shard."""
        total, _ = await self.store.counts(await self.now_ms())
        return total

    async def dead(self) -> list[tuple[str, dict[str, str]]]:
        """Dead letters, oldest first (over every shard)."""
        rows = [row for n in self.store.layout.shard_names for row in await self.redis.xrange(n.dead)]
        rows.sort(key=lambda row: tuple(int(x) for x in str(row[0]).split("-")))
        return [(str(i), dict(f)) for i, f in rows]


class Batched:
    """A processor's batch form over its single one: one ``call_many`` for a batch, results in order.

    With ``TOGETHER`` set, ``running`` wraps every processor in one, so the same test takes
    its occurrences the batch way (``pipeline.batch``) and must reach the same verdicts.
    """

    def __init__(self, inner: Processor) -> None:
        self.inner = inner
        self.batches: list[int] = []

    async def __call__(self, occ: Occurrence) -> Mapping[str, str] | None:
        """The single form, unchanged."""
        return await self.inner(occ)

    async def call_many(self, occs: Sequence[Occurrence]) -> list[BatchResult]:
        """Each occurrence through the single form in turn; an exception stands for its failure."""
        self.batches.append(len(occs))
        results: list[BatchResult] = []
        for occ in occs:
            try:
                results.append(await self.inner(occ))
            except Exception as exc:
                results.append(exc)
        return results

    async def aclose(self) -> None:
        """Close the processor wrapped."""
        await self.inner.aclose()


TOGETHER = False  # set by the ``together`` fixture: run the same tests through batch forms
SHARDS = 0  # set by the ``layout`` fixture: 0 the single layout, else N shards, trigger keys outside


@asynccontextmanager
async def running(
    redis_url: str, config: str, processors: Mapping[str, Processor]
) -> AsyncIterator[Pipeline]:
    """The pipeline of ``config`` (YAML) with ``processors`` standing for the configured names."""
    if TOGETHER:
        processors = {name: Batched(proc) for name, proc in processors.items()}
    settings = load_config_text(config)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    ns = settings.namespace
    store = Store(client, Layout(ns, SHARDS, inline_triggers=False) if SHARDS else Layout.single(ns))
    runtime = Runtime(settings, processors, dict.fromkeys(processors, 5.0))
    ctx = Context(store, runtime, Metrics(), INSTANCE)
    hints = Hints()
    finisher = Finisher(ctx, hints)
    try:
        async with asyncio.TaskGroup() as tg:
            flusher = tg.create_task(finisher.run())
            intake = Intake(ctx, hints, finisher, tg)
            yield Pipeline(client, ctx, hints, intake)
            await intake.dispatcher.drain(10)
            flusher.cancel()
    finally:
        await client.aclose()


async def key_events(client: aioredis.Redis, *, raw: bool = True) -> None:
    """Have Redis announce what the daemon's subscriber listens to (the daemon merges these flags itself)."""
    state = await ensure_notifications(client, manage=True, required=required_flags(raw))
    assert state.ok, state.problem


async def wait_for(check: Callable[[], Awaitable[Any]], timeout_s: float = 5.0) -> Any:
    """Await ``check`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.01)
    raise AssertionError(f"condition not met within {timeout_s}s")
