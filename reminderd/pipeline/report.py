"""What a carried-out verdict tells the operator: one log event and its metrics.

Called after the verdict is written, so a log line never announces a state that Redis
does not hold (tests and operators read the one, then look at the other).
"""

from __future__ import annotations

from typing import Any, assert_never

import structlog

from reminderd.models import Occurrence
from reminderd.pipeline.decisions import Complete, Dead, Defer, Retry, Skip, Verdict
from reminderd.pipeline.runtime import Context
from reminderd.storage.store import Claim

log = structlog.get_logger("reminderd.pipeline.report")


def report(ctx: Context, claim: Claim, verdict: Verdict, occ: Occurrence | None, source: str) -> None:
    """Log and count ``verdict`` on ``claim`` (``occ`` is None when the claim could not be read)."""
    match verdict:
        case Complete():
            assert occ is not None
            _fired(ctx, claim, verdict, occ, source)
        case Skip():
            log.info("reminder.skipped", key=claim.key, occurrence=claim.occurrence,
                     reason=verdict.reason, next_due_ms=verdict.next_due_ms)  # fmt: skip
        case Defer():
            extra = {"processors": list(verdict.processors)} if verdict.processors else {}
            log.info("reminder.deferred", key=claim.key, occurrence=claim.occurrence,
                     until_ms=verdict.until_ms, reason=verdict.reason, **extra)  # fmt: skip
        case Retry():
            assert occ is not None
            _retried(ctx, claim, verdict, occ)
        case Dead():
            _dead(ctx, claim, verdict, occ)
        case _:
            assert_never(verdict)


def _fired(ctx: Context, claim: Claim, verdict: Complete, occ: Occurrence, source: str) -> None:
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
        processors={o.name: "skipped" if o.skipped else "ok" for o in verdict.outcomes},
        instance=ctx.instance,
        **details,
    )


def _retried(ctx: Context, claim: Claim, verdict: Retry, occ: Occurrence) -> None:
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


def _dead(ctx: Context, claim: Claim, verdict: Dead, occ: Occurrence | None) -> None:
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
