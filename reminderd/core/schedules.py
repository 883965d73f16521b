"""Schedule shapes and their compact JSON form stored in each record.

Computing due times lives in ``reminderd.core.recurrence``; this module only says what a
schedule is, so models, config and store can depend on it without pulling in a
scheduler library.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from reminderd.errors import ScheduleError


@dataclass(frozen=True, slots=True)
class Once:
    """Fire one time at ``at_ms`` (epoch milliseconds)."""

    at_ms: int


@dataclass(frozen=True, slots=True)
class Every:
    """Fire at ``anchor_ms + k * interval_ms`` for k = 0, 1, 2, ... (no drift)."""

    interval_ms: int
    anchor_ms: int


@dataclass(frozen=True, slots=True)
class Cron:
    """Fire on a five-field cron expression evaluated in an IANA time zone."""

    expr: str
    tz: str = "UTC"


Schedule = Once | Every | Cron


class Misfire(StrEnum):
    """What a recurring reminder does with occurrences missed while nothing ran."""

    FIRE_ONCE = "fire_once"  # fire one catch-up occurrence, then continue from now
    FIRE_ALL = "fire_all"  # fire every missed occurrence, oldest first
    SKIP = "skip"  # fire none of the missed ones; continue with the next future one


def schedule_to_json(schedule: Schedule) -> str:
    """Compact JSON stored in the record's ``s`` field."""
    match schedule:
        case Once(at_ms):
            data: dict[str, Any] = {"at": at_ms}
        case Every(interval_ms, anchor_ms):
            data = {"every": interval_ms, "anchor": anchor_ms}
        case Cron(expr, tz):
            data = {"cron": expr, "tz": tz}
    return json.dumps(data, separators=(",", ":"))


def schedule_from_json(text: str | bytes) -> Schedule:
    """Inverse of ``schedule_to_json``; raises ``ScheduleError`` on a corrupt value."""
    try:
        data = json.loads(text)
        if "at" in data:
            return Once(int(data["at"]))
        if "every" in data:
            return Every(int(data["every"]), int(data["anchor"]))
        if "cron" in data:
            return Cron(str(data["cron"]), str(data.get("tz", "UTC")))
    except (ValueError, TypeError, KeyError) as exc:
        raise ScheduleError(f"corrupt schedule {text!r}") from exc
    raise ScheduleError(f"corrupt schedule {text!r}")


def is_recurring(schedule: Schedule) -> bool:
    """Whether the schedule has occurrences after the first."""
    return not isinstance(schedule, Once)


def describe_schedule(schedule: Schedule) -> str:
    """Human description for ``show`` and ``list``."""
    from reminderd.core.durations import format_ms

    match schedule:
        case Once():
            return "once"
        case Every(interval_ms, _):
            return f"every {format_ms(interval_ms)}"
        case Cron(expr, tz):
            return f"cron '{expr}' ({tz})"
