"""The user's profile: the lookup hashes of a rule's SMS processors, read once per occurrence.

Quiet hours may need the user's zone before any processor runs (a raw ``SET`` key has no
payload, so its user's zone lives only in that hash), and the SMS processor needs the
phone, zone and opt-out flag of the same hash. Read here once, in one round trip, and
carried on the occurrence (``Occurrence.profile``), it is not read a second time.
"""

from __future__ import annotations

from dataclasses import replace

from redis.exceptions import RedisError

from reminderd.config.model import RuleSettings, Settings
from reminderd.config.sms import LookupSettings, SmsSettings
from reminderd.core.quiet_hours import zone_named
from reminderd.models import Occurrence
from reminderd.storage.store import Claim, Store


def lookups(rule: RuleSettings, settings: Settings) -> list[tuple[str, LookupSettings]]:
    """(processor name, lookup) of each of the rule's SMS processors that reads a user hash."""
    found = []
    for name in rule.processors:
        proc = settings.processors.get(name)
        if isinstance(proc, SmsSettings) and proc.recipient.lookup is not None:
            found.append((name, proc.recipient.lookup))
    return found


def profile_zone(occ: Occurrence, rule: RuleSettings, settings: Settings) -> dict[str, str] | None:
    """The user's zone named in the profile, keyed the way ``quiet_zone`` reads it."""
    window = rule.quiet_hours
    if window is None or occ.profile is None:
        return None
    for _, lookup in lookups(rule, settings):
        if lookup.tz_field is not None:
            value = occ.profile.get(lookup.hash_key(occ.user_id), {}).get(lookup.tz_field)
            if value:
                return {window.tz_field: value}
    return None


def _zone_needed(claim: Claim, occ: Occurrence, rule: RuleSettings) -> bool:
    """Quiet hours apply to this attempt and the payload names no valid zone of its own."""
    window = rule.quiet_hours
    return window is not None and claim.attempts == 0 and zone_named(occ.payload.get(window.tz_field)) is None


async def with_profile(
    store: Store, claim: Claim, occ: Occurrence, rule: RuleSettings, settings: Settings
) -> Occurrence:
    """``occ`` carrying the profile, when quiet hours or a pending SMS processor need it.

    A Redis error while reading is raised when quiet hours need the zone (the lease lapses
    and the occurrence comes due again); otherwise ``occ`` goes on without a profile and the
    SMS processor reads the hash itself, reporting a failure there as retryable.
    """
    found = lookups(rule, settings)
    zone_needed = _zone_needed(claim, occ, rule) and any(lookup.tz_field for _, lookup in found)
    if not zone_needed and all(name in claim.done for name, _ in found):
        return occ
    wanted: dict[str, set[str]] = {}
    for _, lookup in found:
        wanted.setdefault(lookup.hash_key(occ.user_id), set()).update(lookup.fields.values())
    try:
        profile = await store.hash_fields({key: sorted(fields) for key, fields in wanted.items()})
    except RedisError:
        if zone_needed:
            raise
        return occ
    return replace(occ, profile=profile)
