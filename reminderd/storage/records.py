"""The shapes the store reads and writes: the record's fields, requests, claims, replies.

Kept apart from ``store`` so the scripts' callers and the parsing of their replies can be
read (and tested) without the Redis plumbing. ``RecordField`` is the one table of the
record hash's field names: the Lua prelude is generated from it, so a script and this
codec cannot disagree about a letter.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from reminderd.core.schedules import Once, Schedule, schedule_from_json, schedule_to_json
from reminderd.errors import PayloadError
from reminderd.models import Misfire, Reminder

AUX_SEP = "\x1f"  # separates a trigger key from an auxiliary record tag in index members
DONE_SEP = ","  # separates processor names in the done list (config forbids it in names)
FIELD_SEP, ITEM_END = "\x1f", "\x1e"  # packed schedule_many items (``pack_items``)
ERROR_MAX_CHARS = 2000  # the last error kept on a record and in a dead letter
TOMBSTONE_MS = 600_000  # a cancel's fired marker on Cluster, against a late expired event


class RecordField(StrEnum):
    """Fields of the record hash ``Names.record`` (one letter each: millions of records)."""

    DUE = "d"  # due time in epoch ms (moved by retries and deferrals)
    NOMINAL = "n"  # the schedule's due time when ``d`` was moved (absent: ``d``)
    OCCURRENCE = "o"  # occurrence number, 1 for the first
    ATTEMPTS = "a"  # failed attempts of this occurrence
    PAYLOAD = "p"  # payload JSON (absent: ``{}``)
    SCHEDULE = "s"  # schedule JSON (absent: once)
    MISFIRE = "m"  # misfire policy (absent: the rule's)
    DONE = "f"  # processors finished for this occurrence, ``DONE_SEP``-separated
    RAW = "r"  # "1": adopted from a raw trigger key
    ERROR = "e"  # last error text


# A claim row's mark after the member: the CLAIM_FIELDS follow, or the due time of a plain (raw) one-shot.
FULL_ROW, PLAIN_ROW, RAW_ROW = "+", "", "r"
# The record fields a claim returns per occurrence, in this order (``parse_claims``).
CLAIM_FIELDS = (
    RecordField.DUE,
    RecordField.OCCURRENCE,
    RecordField.ATTEMPTS,
    RecordField.PAYLOAD,
    RecordField.SCHEDULE,
    RecordField.NOMINAL,
    RecordField.MISFIRE,
    RecordField.DONE,
    RecordField.RAW,
)


class Note(StrEnum):
    """What a claim or adoption did with a key instead of claiming it (a claim reply's notes)."""

    WITHDRAWN = "withdrawn"  # a raw key alive without an expiry (PERSIST, SET without EX)
    ALIVE = "alive"  # an expired event for a key that exists: adopted at its real expiry
    OVERSIZED = "oversized"  # a raw value above payload_max_bytes: dead-lettered, key deleted
    PROVEN = "proven"  # an expired event for a key the fired ledger says fired already
    LOST = "lost"  # a raw key gone before it was seen alive, not fired (rule or stale event)


RESET = 2  # a finish result: applied, and the raw key was written again meanwhile (adopt it)


def key_of(member: str) -> str:
    """The trigger key an index member belongs to."""
    return member.split(AUX_SEP, 1)[0]


def split_done(text: str) -> tuple[str, ...]:
    """A stored done list as names."""
    return tuple(x for x in text.split(DONE_SEP) if x) if text else ()


@dataclass(frozen=True, slots=True)
class ScheduleRequest:
    """One reminder to write: what ``schedule`` and ``schedule_many`` take."""

    key: str
    due_at_ms: int
    schedule: Schedule
    payload_json: str = ""
    misfire: Misfire | None = None
    only_if_absent: bool = False


def pack_items(reqs: Iterable[ScheduleRequest]) -> str:
    """Requests as ``schedule_many.lua`` reads them: one string, a plain one-shot as key and due.

    One argument instead of six per item: encoding the arguments cost the client more than
    Redis spends writing the reminders. Raises ``ValueError`` for a key holding a separator
    (a control character: no valid trigger key does).
    """
    parts = []
    for req in reqs:
        if FIELD_SEP in req.key or ITEM_END in req.key:
            raise ValueError(f"trigger key {req.key!r} contains a control character")
        if isinstance(req.schedule, Once) and not (req.payload_json or req.misfire or req.only_if_absent):
            parts.append(f"{req.key}{FIELD_SEP}{req.due_at_ms}{ITEM_END}")
            continue
        sched = "" if isinstance(req.schedule, Once) else schedule_to_json(req.schedule)
        misfire = req.misfire.value if req.misfire else ""
        fields = (
            req.key,
            str(req.due_at_ms),
            req.payload_json,
            sched,
            misfire,
            "1" if req.only_if_absent else "0",
        )
        parts.append(FIELD_SEP.join(fields) + ITEM_END)
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    """A dead letter to schedule again as a one-shot, deleting the dead letter in the same step.

    With ``aux`` the replay gets its own index member (``key``, ``AUX_SEP``, ``tag``) beside
    a live reminder of the same key, which it leaves alone.
    """

    key: str
    tag: str
    due_at_ms: int
    nominal_ms: int
    occurrence: int
    payload_json: str
    done: tuple[str, ...]
    dead_id: str
    aux: bool

    @property
    def member(self) -> str:
        """The index member the replay is written under."""
        return f"{self.key}{AUX_SEP}{self.tag}" if self.aux else self.key


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
class Adoption:
    """What one adoption pass found among raw trigger keys."""

    adopted: int
    known: int  # already had a record
    other: int  # not a reminder (no expiry, not a string, gone)
    oversized: tuple[str, ...]  # dead-lettered and deleted: value above ``payload_max_bytes``
    moved: int = 0  # raw reminders whose producer moved the key's expiry: due time followed


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


_AT = {name: i for i, name in enumerate(CLAIM_FIELDS, start=1)}  # offsets after the member
_DUE, _OCC, _ATT, _PAY = (
    _AT[RecordField.DUE],
    _AT[RecordField.OCCURRENCE],
    _AT[RecordField.ATTEMPTS],
    _AT[RecordField.PAYLOAD],
)
_SCH, _NOM, _MIS, _DONE, _RAW = (
    _AT[RecordField.SCHEDULE],
    _AT[RecordField.NOMINAL],
    _AT[RecordField.MISFIRE],
    _AT[RecordField.DONE],
    _AT[RecordField.RAW],
)


@dataclass(frozen=True, slots=True)
class Claimed:
    """A claim script's reply: Redis's clock, the claims, and the notes on keys not claimed."""

    now_ms: int
    claims: list[Claim]
    notes: tuple[tuple[str, Note], ...] = ()


def parse_claims(res: list[Any]) -> Claimed:
    """Parse a claim script's flat reply: Redis now, the notes, then per claim its member and
    either ``FULL_ROW`` and CLAIM_FIELDS or, for a plain (``PLAIN_ROW``) or plain raw (``RAW_ROW``)
    one-shot, its due time alone: three values instead of a dozen, on both sides of the wire."""
    now, flat = int(res[0]), res[1]
    notes = tuple((str(flat[i]), Note(flat[i + 1])) for i in range(0, len(flat), 2))
    width = 1 + len(CLAIM_FIELDS)
    claims = []
    i, end = 2, len(res)
    while i < end:
        mark = res[i + 1]
        if mark in (PLAIN_ROW, RAW_ROW):
            due = int(res[i + 2])
            claims.append(Claim(res[i], due, due, 1, 0, "", Once(due), None, (), mark == RAW_ROW, now))
            i += 3
            continue
        claims.append(_claim(res[i], res[i + 1 : i + width + 1], now))
        i += width + 1
    return Claimed(now, claims, notes)


def _claim(member: str, row: list[Any], now: int) -> Claim:
    """A claim from its full row (``row[0]`` the row's marker, then CLAIM_FIELDS)."""
    due, nominal, misfire = row[_DUE], row[_NOM], row[_MIS]
    return Claim(
        member=member,
        due_at_ms=int(due),
        nominal_due_ms=int(nominal or due),
        occurrence=int(row[_OCC]),
        attempts=int(row[_ATT] or 0),
        payload_json=row[_PAY],
        schedule=_schedule(row[_SCH], nominal or due),
        misfire=Misfire(misfire) if misfire else None,
        done=split_done(row[_DONE]),
        raw=row[_RAW] == "1",
        now_ms=now,
    )


def _schedule(text: str, nominal: str) -> Schedule:
    return schedule_from_json(text) if text else Once(int(nominal))


def reminder_from(member: str, fields: dict[str, str], score: float | None) -> Reminder | None:
    """A reminder from its record hash, or (none) a record-less plain one-shot indexed at ``score``."""
    if fields:
        return reminder_from_fields(member, fields)
    if score is None:
        return None
    due = str(int(score))
    return reminder_from_fields(member, {RecordField.DUE: due, RecordField.OCCURRENCE: "1"})


def reminder_from_fields(member: str, fields: dict[str, str]) -> Reminder:
    """Build a ``Reminder`` from a record hash (rule/user/type parsed by the caller)."""
    due = fields[RecordField.DUE]
    misfire = fields.get(RecordField.MISFIRE)
    return Reminder(
        key=key_of(member),
        rule="",
        user_id="",
        type="",
        payload=decode_payload(fields.get(RecordField.PAYLOAD, "")),
        schedule=_schedule(fields.get(RecordField.SCHEDULE, ""), fields.get(RecordField.NOMINAL, due)),
        due_at_ms=int(due),
        occurrence=int(fields.get(RecordField.OCCURRENCE, 1)),
        attempt=int(fields.get(RecordField.ATTEMPTS, 0)),
        misfire=Misfire(misfire) if misfire else Misfire.FIRE_ONCE,
        done=split_done(fields.get(RecordField.DONE, "")),
    )
