"""Plain data passed between layers: what the API returns and what processors get.

Frozen dataclasses with slots: cheap to build on the hot path, impossible to mutate by
accident in a processor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reminderd.core.schedules import Misfire, Schedule

__all__ = ["Misfire", "Occurrence", "Reminder"]


@dataclass(frozen=True, slots=True)
class Reminder:
    """A scheduled reminder as stored: what ``get`` and ``list`` return."""

    key: str
    rule: str
    user_id: str
    type: str
    payload: Mapping[str, Any]
    schedule: Schedule
    due_at_ms: int
    occurrence: int
    attempt: int
    misfire: Misfire
    done: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One firing of one reminder: the single argument every processor receives."""

    key: str
    rule: str
    user_id: str
    type: str
    payload: Mapping[str, Any]
    due_at_ms: int
    fired_at_ms: int
    occurrence: int
    attempt: int
    # The user's lookup hashes as the pipeline read them before any processor ran:
    # hash -> field -> value (only the fields configured processors name). None when the
    # pipeline read none; a processor then reads for itself. Kept out of repr: it holds
    # phone numbers.
    profile: Mapping[str, Mapping[str, str]] | None = field(default=None, repr=False)

    @property
    def idempotency_key(self) -> str:
        """Stable across retries and instances: key, occurrence number and nominal due time.

        The due time keeps it unique when a key is scheduled again after an earlier
        reminder of the same name finished (its numbering then starts over).
        """
        return f"{self.key}:{self.occurrence}:{self.due_at_ms}"

    @property
    def lateness_ms(self) -> int:
        """How long after its due time this occurrence was taken."""
        return self.fired_at_ms - self.due_at_ms

    def as_json(self) -> dict[str, Any]:
        """The occurrence as a JSON object (webhook body, stream fields, dead letters)."""
        return {
            "key": self.key,
            "rule": self.rule,
            "user_id": self.user_id,
            "type": self.type,
            "payload": dict(self.payload),
            "due_at_ms": self.due_at_ms,
            "fired_at_ms": self.fired_at_ms,
            "occurrence": self.occurrence,
            "attempt": self.attempt,
            "idempotency_key": self.idempotency_key,
        }


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An occurrence that exhausted its attempts or failed permanently."""

    id: str
    key: str
    occurrence: int
    reason: str
    error: str
    attempts: int
    processors: tuple[str, ...]
    payload: Mapping[str, Any]
    due_at_ms: int
    dead_at_ms: int
