"""What the API accepts as a payload and a repeating schedule, before anything is written.

A payload is a JSON object within ``limits.payload_max_bytes`` and nested at most
``limits.payload_max_depth`` levels: Python's JSON codec recurses, so a 10,000-level
document would otherwise end in a ``RecursionError`` instead of a clean refusal (and every
processor that reads it would meet the same). A repeating schedule's interval is at least
``limits.min_interval``: a 1 ms interval re-arms faster than any daemon can fire it.
"""

from __future__ import annotations

import json
from typing import Any

from reminderd.config.model import LimitSettings
from reminderd.core.durations import format_ms
from reminderd.core.schedules import Every, Schedule
from reminderd.errors import PayloadError, ScheduleError
from reminderd.storage.records import encode_payload


def depth_of(value: Any, stop_above: int) -> int:
    """How many levels of objects and arrays ``value`` nests (iterative; stops once past ``stop_above``)."""
    deepest, pending = 0, [(value, 1)]
    while pending and deepest <= stop_above:
        item, depth = pending.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        pending.extend((child, depth + 1) for child in children)
    return deepest


def checked_payload(payload: Any, limits: LimitSettings) -> str:
    """The encoded payload; PayloadError for bad JSON, too deep a nesting or too many bytes."""
    too_deep = f"payload nests more than {limits.payload_max_depth} levels (limits.payload_max_depth)"
    if isinstance(payload, str | bytes):
        try:
            payload = json.loads(payload)
        except RecursionError:
            raise PayloadError(too_deep) from None
        except ValueError as exc:
            raise PayloadError(f"payload is not valid JSON: {exc}") from exc
    if depth_of(payload, limits.payload_max_depth) > limits.payload_max_depth:
        raise PayloadError(too_deep)
    return encode_payload({} if payload is None else payload, limits.payload_max_bytes)


def check_interval(schedule: Schedule, limits: LimitSettings) -> None:
    """ScheduleError for an ``every`` interval below ``limits.min_interval``."""
    if isinstance(schedule, Every) and schedule.interval_ms < limits.min_interval_ms:
        raise ScheduleError(
            f"every {format_ms(schedule.interval_ms)} is shorter than the minimum interval "
            f"{format_ms(limits.min_interval_ms)} (limits.min_interval)"
        )
