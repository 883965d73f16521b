"""One pipeline for every claimed occurrence, whoever found it (event, timer, sweep).

claim (done by the caller) → misfire policy → quiet hours → the rule's unfinished
processors, concurrently, each under its own timeout → complete (re-arm or delete) or
fail (retry with backoff, or dead-letter). Nothing here knows how the claim was found.
The policy decisions live in ``pipeline.gates``, failure handling in ``pipeline.failures``;
this module keeps the hot path: one task per claim, no gather for a single processor.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from redis.exceptions import RedisError

from reminderd.config.model import RuleSettings, Settings
from reminderd.core.trigger_keys import Rejection, parse_key
from reminderd.errors import Deferred, PermanentError, RetryableError, SkipOccurrence
from reminderd.models import Occurrence
from reminderd.pipeline.completions import Completer
from reminderd.pipeline.failures import Failures, Outcome, describe
from reminderd.pipeline.gates import defer_for_quiet_hours, misfire_decision
from reminderd.processors.base import Processor
from reminderd.storage.store import Claim, Completion, Store, decode_payload
from reminderd.telemetry.metrics import Metrics

log = structlog.get_logger("reminderd.pipeline.dispatch")


@dataclass(frozen=True, slots=True)
class Runtime:
    """What a reload may replace: settings and the processors built from them."""

    settings: Settings
    processors: Mapping[str, Processor]
    timeouts_s: Mapping[str, float]


@dataclass(slots=True)
class _Flight:
    claim: Claim
    started: float = field(default_factory=time.monotonic)


class Dispatcher:
    """Runs claimed occurrences concurrently up to ``daemon.concurrency``."""

    def __init__(self, store: Store, runtime: Runtime, metrics: Metrics, instance: str, completer: Completer):
        self.store = store
        self.runtime = runtime
        self.metrics = metrics
        self.instance = instance
        self.completer = completer
        self.in_flight: dict[tuple[str, int], _Flight] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.slot_freed = asyncio.Event()
        self.fired_total = 0
        self.on_rearm: Callable[[int], None] = lambda due_ms: None
        self.log_fired = runtime.settings.logging.level in ("debug", "info")
        self.failures = Failures(store, metrics, instance, lambda: self.runtime.settings, self._now_ms)

    def free_slots(self) -> int:
        """How many more occurrences may be claimed now without waiting."""
        return max(0, self.runtime.settings.daemon.concurrency - len(self.in_flight))

    def submit(self, claims: list[Claim], source: str) -> int:
        """Start processing claimed occurrences (never blocks); how many were new."""
        new = 0
        for claim in claims:
            ident = (claim.member, claim.occurrence)
            if ident in self.in_flight:
                continue  # our own lease lapsed and we re-claimed it: already running
            new += 1
            self.in_flight[ident] = _Flight(claim)
            task = asyncio.create_task(self._guarded(claim, source))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self.metrics.set_in_flight(len(self.in_flight))
        return new

    async def drain(self, timeout_s: float) -> int:
        """Wait for in-flight work up to ``timeout_s``; how many were left unfinished."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
            for task in pending:
                task.cancel()
            return len(pending)
        return 0

    def leases(self) -> list[tuple[str, int]]:
        """(member, occurrence) of everything in flight, for lease renewal."""
        return list(self.in_flight)

    async def _guarded(self, claim: Claim, source: str) -> None:
        try:
            await self._handle(claim, source)
        except asyncio.CancelledError:
            raise
        except RedisError as exc:
            # The lock lapses and the occurrence comes due again: nothing lost.
            log.warning("reminder.redis_error", key=claim.key, occurrence=claim.occurrence, error=str(exc))
        except Exception:
            log.exception("reminder.internal_error", key=claim.key, occurrence=claim.occurrence)
        finally:
            self.in_flight.pop((claim.member, claim.occurrence), None)
            self.metrics.set_in_flight(len(self.in_flight))
            self.slot_freed.set()

    def _now_ms(self, claim: Claim) -> int:
        """Redis's clock, estimated from the claim's reading plus elapsed monotonic time."""
        flight = self.in_flight.get((claim.member, claim.occurrence))
        elapsed = time.monotonic() - flight.started if flight else 0.0
        return claim.now_ms + int(elapsed * 1000)

    async def _handle(self, claim: Claim, source: str) -> None:
        rt = self.runtime
        parsed = parse_key(claim.key, rt.settings.prefixes)
        if isinstance(parsed, Rejection):
            await self.failures.dead(claim, None, "no_rule", parsed.reason, [], [])
            return
        rule = rt.settings.rules[parsed.rule]
        try:
            payload = decode_payload(claim.payload_json)
        except ValueError as exc:
            await self.failures.dead(
                claim, parsed.rule, "poison_payload", f"payload is not valid JSON: {exc}", [], []
            )
            return
        occ = Occurrence(
            key=claim.key,
            rule=parsed.rule,
            user_id=parsed.user_id,
            type=parsed.type,
            payload=payload,
            due_at_ms=claim.nominal_due_ms,
            fired_at_ms=claim.now_ms,
            occurrence=claim.occurrence,
            attempt=claim.attempts + 1,
        )
        fire, next_due = misfire_decision(claim, rule, rt.settings)
        if not fire:
            await self.completer.complete(
                Completion(claim.member, claim.occurrence, next_due), stat="skipped"
            )
            log.info(
                "reminder.skipped",
                key=occ.key,
                occurrence=occ.occurrence,
                reason="misfire_skip",
                next_due_ms=next_due,
            )
            return
        if await defer_for_quiet_hours(self.store, self.instance, rt.settings, claim, occ, rule):
            return
        await self._run(rt, claim, occ, rule, next_due, source)

    async def _run(
        self,
        rt: Runtime,
        claim: Claim,
        occ: Occurrence,
        rule: RuleSettings,
        next_due: int | None,
        source: str,
    ) -> None:
        pending = [p for p in rule.processors if p not in claim.done]
        if len(pending) == 1:  # the common case: no gather, no second task
            outcomes = [await self._call(rt, claim, occ, pending[0], False)]
        else:
            outcomes = list(await asyncio.gather(*(self._call(rt, claim, occ, p, True) for p in pending)))
        failed = [o for o in outcomes if not o.ok]
        if not failed:
            await self.completer.complete(Completion(claim.member, claim.occurrence, next_due))
            if next_due is not None:
                self.on_rearm(next_due)
            self._fired(claim, occ, outcomes, source)
            return
        if all(o.deferred for o in failed):
            until = self._now_ms(claim) + int(max(o.retry_after_s or 0 for o in failed) * 1000)
            await self.store.defer(self.instance, claim, until)
            log.info(
                "reminder.deferred",
                key=occ.key,
                occurrence=occ.occurrence,
                until_ms=until,
                reason="rate_limit",
                processors=[o.name for o in failed],
            )
            return
        done = [*claim.done, *(o.name for o in outcomes if o.ok)]
        await self.failures.retry_or_dead(claim, occ, rule, next_due, done, failed)

    async def _call(self, rt: Runtime, claim: Claim, occ: Occurrence, name: str, mark: bool) -> Outcome:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(rt.timeouts_s[name]):
                outcome = Outcome(name, True, detail=await rt.processors[name](occ))
        except SkipOccurrence as exc:
            outcome = Outcome(name, True, skipped=True, error=str(exc))
        except PermanentError as exc:
            outcome = Outcome(name, False, error=describe(exc), permanent=True)
        except Deferred as exc:
            outcome = Outcome(name, False, error=str(exc), retry_after_s=exc.retry_after_s, deferred=True)
        except RetryableError as exc:
            outcome = Outcome(name, False, error=describe(exc), retry_after_s=exc.retry_after_s)
        except TimeoutError:
            outcome = Outcome(name, False, error=f"timed out after {rt.timeouts_s[name]:g}s")
        except Exception as exc:
            outcome = Outcome(name, False, error=f"{type(exc).__name__}: {exc}"[:500])
        self.metrics.observe_processor_duration(occ.rule, name, time.perf_counter() - started)
        if outcome.ok:
            self.metrics.fired(occ.rule, name)
            if mark:
                await self.store.mark_done(self.instance, claim, name)
        else:
            self.metrics.failed(occ.rule, name)
        return outcome

    def _fired(self, claim: Claim, occ: Occurrence, outcomes: list[Outcome], source: str) -> None:
        lateness = claim.now_ms - claim.due_at_ms
        self.metrics.observe_lateness(occ.rule, lateness)
        if source == "startup" or lateness > self.runtime.settings.daemon.sweep_interval_ms:
            self.metrics.recovered(occ.rule)  # delivered by the safety net, not on time
        self.fired_total += 1
        if not self.log_fired:
            return
        details: dict[str, Any] = {}
        for o in outcomes:
            if o.detail:
                details.update({f"{o.name}.{k}": v for k, v in o.detail.items()})
        log.info(
            "reminder.fired",
            key=occ.key,
            user_id=occ.user_id,
            type=occ.type,
            occurrence=occ.occurrence,
            due_ms=claim.due_at_ms,
            lateness_ms=lateness,
            attempt=occ.attempt,
            source=source,
            processors={o.name: "skipped" if o.skipped else "ok" for o in outcomes},
            instance=self.instance,
            **details,
        )
