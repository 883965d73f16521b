"""The shapes the store reads and writes: requests, claims, completions, payload codec.

Kept apart from ``store`` so the scripts' callers and the parsing of their replies can be
read (and tested) without the Redis plumbing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reminderd.core.schedules import Once, Schedule, schedule_from_json
from reminderd.errors import PayloadError
from reminderd.models import Misfire, Reminder

AUX_SEP = "\x1f"  # separates a trigger key from an auxiliary record tag in index members


def key_of(member: str) -> str:
    """The trigger key an index member belongs to."""
    return member.split(AUX_SEP, 1)[0]


@dataclass(frozen=True, slots=True)
class ScheduleRequest:
    """One reminder to write: what ``schedule`` and ``schedule_many`` take."""

    key: str
    due_at_ms: int
    schedule: Schedule
    payload_json: str = ""
    misfire: Misfire | None = None
    only_if_absent: bool = False


@dataclass(frozen=True, slots=True)
class Claim:
    """A claimed occurrence: the lock is ours until ``now_ms + lease``."""

    member: str
    due_at_ms: int
    nominal_due_ms: int
    occurrence: int
    attempts: int
    payload_json: str
    schedule: Schedule
    misfire: Misfire | None
    done: tuple[str, ...]
    raw: bool
    now_ms: int

    @property
    def key(self) -> str:
        """The trigger key."""
        return key_of(self.member)


@dataclass(frozen=True, slots=True)
class Completion:
    """One finished occurrence for ``complete_many``: ``next_due_ms`` None means done."""

    member: str
    occurrence: int
    next_due_ms: int | None


def encode_payload(payload: Any, max_bytes: int) -> str:
    """Validate and encode a payload: a JSON object within the size limit."""
    if isinstance(payload, str | bytes):
        try:
            payload = json.loads(payload)
        except ValueError as exc:
            raise PayloadError(f"payload is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise PayloadError(f"payload must be a JSON object, got {type(payload).__name__}")
    try:
        text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"payload is not JSON-serialisable: {exc}") from exc
    size = len(text.encode())
    if size > max_bytes:
        raise PayloadError(f"payload is {size} bytes, above the limit of {max_bytes} bytes")
    return "" if text == "{}" else text


def decode_payload(text: str) -> dict[str, Any]:
    """Inverse of ``encode_payload``; a corrupt value becomes an empty payload marker."""
    if not text:
        return {}
    value = json.loads(text)
    return value if isinstance(value, dict) else {"_value": value}


def parse_claims(res: list[Any]) -> tuple[int, list[Claim]]:
    """Parse the claim script's flat reply: Redis now, then ten values per claimed occurrence."""
    now = int(res[0])
    claims = []
    for i in range(1, len(res), 10):
        m, d, o, a, p, s, n, mis, f, r = res[i : i + 10]
        due = int(d)
        claims.append(
            Claim(
                member=m,
                due_at_ms=due,
                nominal_due_ms=int(n) if n else due,
                occurrence=int(o),
                attempts=int(a) if a else 0,
                payload_json=p,
                schedule=_schedule(s, n or d),
                misfire=Misfire(mis) if mis else None,
                done=tuple(x for x in f.split(",") if x),
                raw=r == "1",
                now_ms=now,
            )
        )
    return now, claims


def _schedule(text: str, nominal: str) -> Schedule:
    return schedule_from_json(text) if text else Once(int(nominal))


def reminder_from_fields(member: str, fields: dict[str, str]) -> Reminder:
    """Build a ``Reminder`` from a record hash (rule/user/type parsed by the caller)."""
    due = int(fields["d"])
    return Reminder(
        key=key_of(member),
        rule="",
        user_id="",
        type="",
        payload=decode_payload(fields.get("p", "")),
        schedule=_schedule(fields.get("s", ""), fields.get("n", fields["d"])),
        due_at_ms=due,
        occurrence=int(fields.get("o", 1)),
        attempt=int(fields.get("a", 0)),
        misfire=Misfire(fields["m"]) if fields.get("m") else Misfire.FIRE_ONCE,
        done=tuple(x for x in fields.get("f", "").split(",") if x),
    )


# -- the shapes of ``Store.finish_many``: every verdict of a batch in one round trip ----------


@dataclass(frozen=True, slots=True)
class Failure:
    """A failed occurrence: retried at ``retry_at_ms``, else dead-lettered.

    A dead-lettered recurring reminder is re-armed for ``next_due_ms`` (None: deleted);
    ``done`` are the processors that finished, ``pending`` those the dead letter lists.
    """

    member: str
    occurrence: int
    retry_at_ms: int | None
    error: str
    done: tuple[str, ...] = ()
    next_due_ms: int | None = None
    reason: str = ""
    pending: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Deferral:
    """An occurrence moved to ``until_ms``, keeping its number, nominal due time and attempts."""

    member: str
    occurrence: int
    until_ms: int


@dataclass(frozen=True, slots=True)
class Finishes:
    """One batch of finished occurrences, by kind (``fired`` and ``skipped`` count as such in the stats)."""

    fired: Sequence[Completion] = ()
    skipped: Sequence[Completion] = ()
    failures: Sequence[Failure] = ()
    deferrals: Sequence[Deferral] = ()
