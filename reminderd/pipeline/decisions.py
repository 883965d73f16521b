"""What happens to a claimed occurrence, decided by pure functions over values.

``prepare`` turns a claim into the occurrence processors get, or a dead letter when no
rule owns the key or the payload is not JSON. ``plan`` applies the rule's policy before
any processor runs: the misfire policy (was a first attempt missed, and when is the next
one due?), quiet hours (must it wait for the user's window to end?) and which processors
are still to run. ``outcome_of`` reads a processor's failure by its type, and ``judge``
turns the outcomes into the verdict: complete (re-arm or delete), defer for a rate limit,
retry with backoff under the rule's retry policy (else the global one), or dead-letter.

Nothing here does I/O or reads a clock (callers pass Redis's time); the dispatcher calls
these and the finisher carries the verdict out.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from reminderd.config.model import RetrySettings, RuleSettings, Settings
from reminderd.core.backoff import backoff_ms
from reminderd.core.quiet_hours import defer_until_ms, quiet_zone
from reminderd.core.recurrence import after_misfire, next_due_ms
from reminderd.core.trigger_keys import Rejection, parse_key
from reminderd.errors import Deferred, PermanentError, RetryableError, SkipOccurrence
from reminderd.models import Misfire, Occurrence
from reminderd.pipeline.profile import profile_zone
from reminderd.storage.store import Claim, decode_payload


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class Prepared:
    """A claim read as the occurrence processors get, with the rule that owns it."""

    occ: Occurrence
    rule: RuleSettings


@dataclass(frozen=True, slots=True)
class Skip:
    """Do not fire this occurrence (missed, misfire policy ``skip``); go on at ``next_due_ms``."""

    next_due_ms: int | None
    reason: str = "misfire_skip"


@dataclass(frozen=True, slots=True)
class Defer:
    """Move the occurrence to ``until_ms`` without using an attempt."""

    until_ms: int
    reason: str  # quiet_hours or rate_limit
    processors: tuple[str, ...] = ()  # those that asked for it (a rate limit)


@dataclass(frozen=True, slots=True)
class Run:
    """Run ``pending`` now (attempt ``attempt``); once all succeed the reminder is due at ``next_due_ms``."""

    pending: tuple[str, ...]
    next_due_ms: int | None
    attempt: int
    done: tuple[str, ...] = ()  # processors that finished in an earlier attempt


@dataclass(frozen=True, slots=True)
class Complete:
    """Every processor succeeded: re-arm for ``next_due_ms``, or delete (None)."""

    next_due_ms: int | None
    outcomes: tuple[Outcome, ...] = ()


@dataclass(frozen=True, slots=True)
class Retry:
    """Attempt ``attempt`` failed: try the processors not in ``done`` again at ``at_ms``."""

    at_ms: int
    attempt: int
    error: str
    done: tuple[str, ...]
    failed: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Dead:
    """Give up on this occurrence: dead-letter it; a recurring reminder goes on at ``next_due_ms``."""

    reason: str  # no_rule, poison_payload, permanent_failure or attempts_exhausted
    error: str
    done: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()
    next_due_ms: int | None = None
    rule: str | None = None  # for a claim never prepared: the rule its key names, if any


Plan = Skip | Defer | Run
Verdict = Skip | Defer | Complete | Retry | Dead


def prepare(claim: Claim, settings: Settings) -> Prepared | Dead:
    """The occurrence of ``claim``, or a dead letter for a key no rule owns or a payload that is not JSON."""
    key = claim.key
    parsed = parse_key(key, settings.prefixes)
    if isinstance(parsed, Rejection):
        return Dead("no_rule", parsed.reason)
    try:
        payload = decode_payload(claim.payload_json)
    except ValueError as exc:
        return Dead("poison_payload", f"payload is not valid JSON: {exc}", rule=parsed.rule)
    occ = Occurrence(
        key=key,
        rule=parsed.rule,
        user_id=parsed.user_id,
        type=parsed.type,
        payload=payload,
        due_at_ms=claim.nominal_due_ms,
        fired_at_ms=claim.now_ms,
        occurrence=claim.occurrence,
        attempt=claim.attempts + 1,
    )
    return Prepared(occ, settings.rules[parsed.rule])


def plan(claim: Claim, occ: Occurrence, rule: RuleSettings, settings: Settings) -> Plan:
    """Before any processor runs: skip a missed occurrence, defer one inside quiet hours, or run."""
    fire, next_due = misfire(claim, rule, settings.daemon.misfire_grace_ms)
    if not fire:
        return Skip(next_due)
    until = quiet_until(claim, occ, rule, settings)
    if until is not None:
        return Defer(until, "quiet_hours")
    pending = tuple(p for p in rule.processors if p not in claim.done)
    return Run(pending, next_due, claim.attempts + 1, claim.done)


def misfire(claim: Claim, rule: RuleSettings, grace_ms: int) -> tuple[bool, int | None]:
    """Misfire policy: only a first attempt at its undeferred due time can be 'missed'.

    Returns whether to fire this occurrence and the next due time (None: none follows).
    """
    policy = claim.misfire or rule.misfire
    if claim.attempts == 0 and claim.due_at_ms == claim.nominal_due_ms:
        decision = after_misfire(claim.schedule, claim.nominal_due_ms, claim.now_ms, policy, grace_ms)
        return decision.fire, decision.next_due_ms
    nxt = next_due_ms(claim.schedule, claim.nominal_due_ms)
    if nxt is not None and nxt <= claim.now_ms and policy is not Misfire.FIRE_ALL:
        nxt = after_misfire(claim.schedule, nxt, claim.now_ms, Misfire.FIRE_ONCE, 0).next_due_ms
    return True, nxt


def quiet_until(claim: Claim, occ: Occurrence, rule: RuleSettings, settings: Settings) -> int | None:
    """The end of the user's quiet window a first attempt falls in; None when it may go out now."""
    window = rule.quiet_hours
    if window is None or claim.attempts > 0:
        return None
    zone = quiet_zone(occ.payload, window, profile_zone(occ, rule, settings))
    # A catch-up after downtime is judged by when it would go out, not when it was due.
    return defer_until_ms(max(claim.due_at_ms, claim.now_ms), window, zone)


def outcome_of(name: str, exc: Exception, timeout_s: float) -> Outcome:
    """A processor's failure, read by the exception's type (never by its message)."""
    if isinstance(exc, SkipOccurrence):
        return Outcome(name, True, skipped=True, error=str(exc))
    if isinstance(exc, PermanentError):
        return Outcome(name, False, error=describe(exc), permanent=True)
    if isinstance(exc, Deferred):
        return Outcome(name, False, error=str(exc), retry_after_s=exc.retry_after_s, deferred=True)
    if isinstance(exc, RetryableError):
        return Outcome(name, False, error=describe(exc), retry_after_s=exc.retry_after_s)
    if isinstance(exc, TimeoutError):
        return Outcome(name, False, error=f"timed out after {timeout_s:g}s")
    return Outcome(name, False, error=f"{type(exc).__name__}: {exc}"[:500])


def describe(exc: Exception) -> str:
    """A processor error for the record and the log: its text (capped) and provider code."""
    code = getattr(exc, "code", None)
    text = str(exc)[:500]
    return f"{text} (code {code})" if code else text


def judge(
    outcomes: Sequence[Outcome],
    run: Run,
    policy: RetrySettings,
    now_ms: int,
    rng: random.Random | None = None,
) -> Verdict:
    """The verdict on one attempt, from its processors' outcomes and the retry policy.

    All succeeded: complete. Only rate limits said "not now": defer to the latest time they
    named, without using an attempt. A permanent failure, or the last attempt the policy
    allows: dead-letter. Otherwise retry after the backoff (``Retry-After`` is a floor).
    """
    failed = [o for o in outcomes if not o.ok]
    if not failed:
        return Complete(run.next_due_ms, tuple(outcomes))
    names = tuple(o.name for o in failed)
    if all(o.deferred for o in failed):
        wait_s = max(o.retry_after_s or 0 for o in failed)
        return Defer(now_ms + int(wait_s * 1000), "rate_limit", names)
    done = (*run.done, *(o.name for o in outcomes if o.ok))
    error = "; ".join(f"{o.name}: {o.error}" for o in failed)
    permanent = any(o.permanent for o in failed)
    if permanent or run.attempt >= policy.max_attempts:
        reason = "permanent_failure" if permanent else "attempts_exhausted"
        return Dead(reason, error, done, names, run.next_due_ms)
    retry_after_s = max(o.retry_after_s or 0 for o in failed) or None
    delay_ms = backoff_ms(run.attempt, policy, retry_after_s=retry_after_s, rng=rng)
    return Retry(now_ms + delay_ms, run.attempt, error, done, names)
