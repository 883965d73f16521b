"""What a failed occurrence leads to: a retry with backoff, or a dead letter.

A processor's outcome says how it failed (permanent, retryable with a ``Retry-After``,
deferred by a rate limit); the rule's retry policy (else the global one) says how often
to try. A permanent failure or the last allowed attempt dead-letters the occurrence,
keeping the next due time of a recurring one so the schedule goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import structlog

from reminderd.config.model import RuleSettings, Settings
from reminderd.core.backoff import backoff_ms
from reminderd.models import Occurrence
from reminderd.storage.store import Claim, DeadLetterRequest, Retry, Store
from reminderd.telemetry.metrics import Metrics

log = structlog.get_logger("reminderd.pipeline.failures")


@dataclass(slots=True)
class Outcome:
    """The result of one processor call."""

    name: str
    ok: bool
    detail: Mapping[str, str] | None = None
    error: str = ""
    permanent: bool = False
    skipped: bool = False
    retry_after_s: float | None = None
    deferred: bool = False


def describe(exc: Exception) -> str:
    """A processor error for the record and the log: its text (capped) and provider code."""
    code = getattr(exc, "code", None)
    text = str(exc)[:500]
    return f"{text} (code {code})" if code else text


class Failures:
    """Records failed occurrences of one instance: retry later, or dead-letter."""

    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        instance: str,
        settings: Callable[[], Settings],
        now_ms: Callable[[Claim], int],
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.instance = instance
        self._settings = settings  # read at each use: a reload may replace them mid-flight
        self._now_ms = now_ms

    def _window_ms(self) -> int:
        return self._settings().daemon.raw_dedupe_window_ms

    async def retry_or_dead(
        self,
        claim: Claim,
        occ: Occurrence,
        rule: RuleSettings,
        next_due: int | None,
        done: list[str],
        failed: list[Outcome],
    ) -> None:
        """Schedule the next attempt with backoff, or dead-letter when none may follow."""
        policy = rule.retry or self._settings().retry
        attempts = claim.attempts + 1
        error = "; ".join(f"{o.name}: {o.error}" for o in failed)
        permanent = any(o.permanent for o in failed)
        if permanent or attempts >= policy.max_attempts:
            reason = "permanent_failure" if permanent else "attempts_exhausted"
            await self.dead(claim, occ.rule, reason, error, done, [o.name for o in failed], next_due)
            return
        retry_after = max((o.retry_after_s or 0 for o in failed), default=0) or None
        retry_at = self._now_ms(claim) + backoff_ms(attempts, policy, retry_after_s=retry_after)
        retry = Retry(claim.member, claim.occurrence, retry_at, error, tuple(done))
        await self.store.fail(self.instance, retry, fired_window_ms=self._window_ms())
        for o in failed:
            self.metrics.retried(occ.rule, o.name)
        log.warning(
            "reminder.failed",
            key=occ.key,
            occurrence=occ.occurrence,
            attempt=attempts,
            error=error,
            retry_at_ms=retry_at,
            done=done,
            instance=self.instance,
        )

    async def dead(
        self,
        claim: Claim,
        rule_name: str | None,
        reason: str,
        error: str,
        done: list[str],
        pending: list[str],
        next_due: int | None = None,
    ) -> None:
        """Dead-letter the occurrence; with ``next_due`` a recurring one stays scheduled."""
        item = DeadLetterRequest(
            claim.member, claim.occurrence, reason, error, tuple(done), tuple(pending), next_due
        )
        await self.store.fail(self.instance, item, fired_window_ms=self._window_ms())
        self.metrics.dead_lettered(rule_name or "none")
        log.error(
            "reminder.dead_lettered",
            key=claim.key,
            occurrence=claim.occurrence,
            reason=reason,
            error=error,
            attempts=claim.attempts + 1,
            pending=pending,
            next_due_ms=next_due,
            instance=self.instance,
        )
