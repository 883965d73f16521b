"""What the store applies when an occurrence ends or moves on: the verdicts and their encoding.

A completion, a retry, a deferral and a dead letter are each one frozen record; the store
applies any mix of them in one ``finish.lua`` call (``Store.finish_many``), so the pipeline
can finish every kind of verdict in batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reminderd.storage.records import DONE_SEP, ERROR_MAX_CHARS


@dataclass(frozen=True, slots=True)
class Completion:
    """A finished occurrence: re-armed at ``next_due_ms``, or deleted when it is None.

    ``stat`` names the cumulative counter it adds to (``''``: none).
    """

    member: str
    occurrence: int
    next_due_ms: int | None
    stat: str = "fired"


@dataclass(frozen=True, slots=True)
class Retry:
    """A failed attempt to try again at ``retry_at_ms``; ``done`` processors do not run again."""

    member: str
    occurrence: int
    retry_at_ms: int
    error: str
    done: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Deferral:
    """An occurrence moved to ``until_ms`` without using an attempt (quiet hours, rate limit)."""

    member: str
    occurrence: int
    until_ms: int


@dataclass(frozen=True, slots=True)
class DeadLetterRequest:
    """An occurrence given up: dead-lettered, then re-armed at ``next_due_ms`` or deleted."""

    member: str
    occurrence: int
    reason: str
    error: str
    done: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()
    next_due_ms: int | None = None


FinishItem = Completion | Retry | Deferral | DeadLetterRequest


COMPLETION_STAT = "fired"  # the counter of a completion that names no other (sent once a batch)


def finish_args(items: Sequence[FinishItem]) -> list[str | int]:
    """Verdicts as ``finish.lua`` reads them: one kind letter each, the default stat, the groups.

    The letters travel as one string and a plain completion as three values: a drain of
    20 000 occurrences encodes every argument, so each one per verdict costs.
    """
    kinds: list[str] = []
    groups: list[str | int] = []
    for item in items:
        match item:
            case Completion() if item.stat == COMPLETION_STAT:
                kinds.append("C")
                groups += [item.member, item.occurrence, _opt(item.next_due_ms)]
            case Completion():
                kinds.append("K")
                groups += [item.member, item.occurrence, _opt(item.next_due_ms), item.stat]
            case Retry():
                kinds.append("R")
                error, done = item.error[:ERROR_MAX_CHARS], DONE_SEP.join(item.done)
                groups += [item.member, item.occurrence, item.retry_at_ms, error, done]
            case Deferral():
                kinds.append("W")
                groups += [item.member, item.occurrence, item.until_ms]
            case DeadLetterRequest():
                kinds.append("D")
                groups += [item.member, item.occurrence, _opt(item.next_due_ms), *_dead_fields(item)]
    return ["".join(kinds), COMPLETION_STAT, *groups]


def _dead_fields(item: DeadLetterRequest) -> list[str | int]:
    return [item.error[:ERROR_MAX_CHARS], DONE_SEP.join(item.done), item.reason, DONE_SEP.join(item.pending)]


def _opt(ms: int | None) -> str | int:
    return "" if ms is None else ms
