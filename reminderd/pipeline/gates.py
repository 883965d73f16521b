"""What a rule's policy decides for a claimed occurrence before any processor runs.

Two decisions, both made on the claim alone (plus, for a raw key, one lookup): the misfire
policy (was this first attempt missed, and when is the next one due?) and quiet hours
(must it wait until the user's window ends?). The pipeline in ``reminderd.pipeline.dispatch`` asks;
nothing here runs processors or completes occurrences.
"""

from __future__ import annotations

import structlog

from reminderd.config.model import RuleSettings, Settings
from reminderd.config.sms import SmsSettings
from reminderd.core.quiet_hours import defer_until_ms, quiet_zone, zone_named
from reminderd.core.recurrence import after_misfire, next_due_ms
from reminderd.models import Misfire, Occurrence
from reminderd.storage.store import Claim, Store

log = structlog.get_logger("reminderd.pipeline.gates")


def misfire_decision(claim: Claim, rule: RuleSettings, settings: Settings) -> tuple[bool, int | None]:
    """Misfire policy: only a first attempt at its undeferred due time can be 'missed'.

    Returns whether to fire this occurrence and the next due time (None: none follows).
    """
    policy = claim.misfire or rule.misfire
    if claim.attempts == 0 and claim.due_at_ms == claim.nominal_due_ms:
        grace = settings.daemon.misfire_grace_ms
        decision = after_misfire(claim.schedule, claim.nominal_due_ms, claim.now_ms, policy, grace)
        return decision.fire, decision.next_due_ms
    nxt = next_due_ms(claim.schedule, claim.nominal_due_ms)
    if nxt is not None and nxt <= claim.now_ms and policy is not Misfire.FIRE_ALL:
        nxt = after_misfire(claim.schedule, nxt, claim.now_ms, Misfire.FIRE_ONCE, 0).next_due_ms
    return True, nxt


async def defer_for_quiet_hours(
    store: Store, instance: str, settings: Settings, claim: Claim, occ: Occurrence, rule: RuleSettings
) -> bool:
    """Defer a first attempt due inside the user's quiet hours to the window's end; True if deferred."""
    if rule.quiet_hours is None or claim.attempts > 0:
        return False
    zone = quiet_zone(occ.payload, rule.quiet_hours, await lookup_zone(store, settings, occ, rule))
    # A catch-up after downtime is judged by when it would go out, not when it was due.
    until = defer_until_ms(max(claim.due_at_ms, claim.now_ms), rule.quiet_hours, zone)
    if until is None:
        return False
    await store.defer(instance, claim, until)
    log.info(
        "reminder.deferred", key=occ.key, occurrence=occ.occurrence, until_ms=until, reason="quiet_hours"
    )
    return True


async def lookup_zone(
    store: Store, settings: Settings, occ: Occurrence, rule: RuleSettings
) -> dict[str, str] | None:
    """The user's zone from the lookup hash of the rule's SMS processor, as ``quiet_zone`` reads it.

    A raw ``SET`` key has no payload, so its user's zone lives only in that hash. Read
    only when the payload names no valid zone; a Redis error lets the lease lapse (retry).
    """
    window = rule.quiet_hours
    if window is None or zone_named(occ.payload.get(window.tz_field)) is not None:
        return None
    for name in rule.processors:
        proc = settings.processors.get(name)
        lookup = proc.recipient.lookup if isinstance(proc, SmsSettings) else None
        if lookup is None or lookup.tz_field is None:
            continue
        key = lookup.key.replace("{user_id}", occ.user_id)
        value = await store.hash_field(key, lookup.tz_field)
        if value:
            return {window.tz_field: value}
    return None
