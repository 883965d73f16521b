"""What a carried-out verdict tells the operator: one log event and its metrics.

Called after the verdict is written, so a log line never announces a state that Redis
does not hold (tests and operators read the one, then look at the other). A ``Report`` is
made once per batch of verdicts: its logger is bound once (structlog resolves its
configuration per call of an unbound logger, a cost paid per fire line at ``info``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, assert_never

import structlog

from reminderd.models import Occurrence
from reminderd.pipeline.decisions import Complete, Dead, Defer, Retry, Skip, Verdict
from reminderd.pipeline.runtime import Context
from reminderd.storage.store import Claim

log = structlog.get_logger("reminderd.pipeline.report")


@dataclass(frozen=True, slots=True)
class Report:
    """Where a batch's verdicts are told: the context, the claims' source, one bound logger."""

    ctx: Context
    source: str
    log: Any

    @classmethod
    def of(cls, ctx: Context, source: str) -> Report:
        """A report for verdicts on claims that came from ``source`` (timer, sweep, event, startup)."""
        return cls(ctx, source, log.bind())


def report(out: Report, claim: Claim, verdict: Verdict, occ: Occurrence | None) -> None:
    """Log and count ``verdict`` on ``claim`` (``occ`` is None when the claim could not be read)."""
    ctx, log = out.ctx, out.log
    match verdict:
        case Complete():
            assert occ is not None
            _fired(out, claim, verdict, occ)
        case Skip():
            log.info("reminder.skipped", key=claim.key, occurrence=claim.occurrence,
                     reason=verdict.reason, next_due_ms=verdict.next_due_ms)  # fmt: skip
        case Defer():
            extra = {"processors": list(verdict.processors)} if verdict.processors else {}
            log.info("reminder.deferred", key=claim.key, occurrence=claim.occurrence,
                     until_ms=verdict.until_ms, reason=verdict.reason, **extra)  # fmt: skip
        case Retry():
            assert occ is not None
            _retried(ctx, log, claim, verdict, occ)
        case Dead():
            _dead(ctx, log, claim, verdict, occ)
        case _:
            assert_never(verdict)


def _fired(out: Report, claim: Claim, verdict: Complete, occ: Occurrence) -> None:
    ctx, source = out.ctx, out.source
    lateness = claim.now_ms - claim.due_at_ms
    ctx.metrics.observe_lateness(occ.rule, lateness)
    if source == "startup" or lateness > ctx.settings.daemon.sweep_interval_ms:
        ctx.metrics.recovered(occ.rule)  # delivered by the safety net, not on time
    if ctx.settings.logging.level not in ("debug", "info"):
        return
    details: dict[str, Any] = {}
    for o in verdict.outcomes:
        if o.detail:
            details.update({f"{o.name}.{k}": v for k, v in o.detail.items()})
    out.log.info(
        "reminder.fired",
        key=occ.key,
        user_id=occ.user_id,
        type=occ.type,
        occurrence=occ.occurrence,
        due_ms=claim.due_at_ms,
        lateness_ms=lateness,
        attempt=occ.attempt,
        source=source,
        processors={o.name: "skipped" if o.skipped else "ok" for o in verdict.outcomes},
        instance=ctx.instance,
        **details,
    )


def _retried(ctx: Context, log: Any, claim: Claim, verdict: Retry, occ: Occurrence) -> None:
    for name in verdict.failed:
        ctx.metrics.retried(occ.rule, name)
    log.warning(
        "reminder.failed",
        key=claim.key,
        occurrence=claim.occurrence,
        attempt=verdict.attempt,
        error=verdict.error,
        retry_at_ms=verdict.at_ms,
        done=list(verdict.done),
        instance=ctx.instance,
    )


def _dead(ctx: Context, log: Any, claim: Claim, verdict: Dead, occ: Occurrence | None) -> None:
    ctx.metrics.dead_lettered(occ.rule if occ is not None else verdict.rule or "none")
    log.error(
        "reminder.dead_lettered",
        key=claim.key,
        occurrence=claim.occurrence,
        reason=verdict.reason,
        error=verdict.error,
        attempts=claim.attempts + 1,
        pending=list(verdict.pending),
        next_due_ms=verdict.next_due_ms,
        instance=ctx.instance,
    )
