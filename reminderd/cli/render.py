"""Output shared by the commands: ``--json`` printing, aligned rows, tables, reminders."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from reminderd.api.status import align, format_instant, format_span, format_when
from reminderd.core.pii import mask_pii
from reminderd.core.recurrence import describe_next
from reminderd.core.schedules import describe_schedule, is_recurring, schedule_to_json
from reminderd.models import Reminder
from reminderd.telemetry.logs import mask_secrets


def masked(data: Any, reveal: bool) -> Any:
    """``data`` with secret-named fields and phone numbers masked, as in every log line.

    Payloads carry personal data; a terminal or a pasted ``--json`` output is no safer
    than a log. ``--reveal`` shows them as stored.
    """
    if reveal:
        return data
    return mask_pii(None, "", mask_secrets(None, "", {"data": data}))["data"]


def for_display(rem: Reminder, reveal: bool) -> Reminder:
    """The reminder with its payload masked unless ``reveal``."""
    return rem if reveal else replace(rem, payload=masked(dict(rem.payload), reveal))


def emit(data: Any) -> None:
    """Print ``--json`` output."""
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def print_rows(rows: list[tuple[str, str]]) -> None:
    """Print ``label  value`` pairs with the values in one column."""
    print("\n".join(align(rows)))


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns separated by two spaces."""
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
    return [
        "  ".join(f"{c:<{w}}" for c, w in zip(row, widths, strict=True)).rstrip() for row in (header, *rows)
    ]


def short(text: str, limit: int = 60) -> str:
    """``text`` on one line, cut to ``limit`` characters so a table row stays readable."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def reminder_json(rem: Reminder, now_ms: int) -> dict[str, Any]:
    """A reminder as JSON for ``--json`` output."""
    return {
        "key": rem.key,
        "rule": rem.rule,
        "user_id": rem.user_id,
        "type": rem.type,
        "payload": dict(rem.payload),
        "schedule": describe_schedule(rem.schedule),
        "schedule_spec": json.loads(schedule_to_json(rem.schedule)),
        "due_at_ms": rem.due_at_ms,
        "due_at": format_instant(rem.due_at_ms),
        "due_in_ms": rem.due_at_ms - now_ms,
        "occurrence": rem.occurrence,
        "attempts": rem.attempt,
        "misfire": rem.misfire.value,
        "done": list(rem.done),
    }


def summary_rows(rem: Reminder, now_ms: int) -> list[tuple[str, str]]:
    """The few rows printed after a reminder is written."""
    return [
        ("key", rem.key),
        ("schedule", describe_schedule(rem.schedule)),
        ("next due", format_when(rem.due_at_ms, now_ms)),
        ("occurrence", str(rem.occurrence)),
    ]


def detail_rows(rem: Reminder, now_ms: int) -> list[tuple[str, str]]:
    """Everything ``show`` prints, with the next three due times of a recurring reminder."""
    left_ms = rem.due_at_ms - now_ms
    rows = [
        *summary_rows(rem, now_ms)[:1],
        ("rule", rem.rule or "-"),
        ("user", rem.user_id or "-"),
        ("type", rem.type or "-"),
        ("payload", json.dumps(dict(rem.payload), ensure_ascii=False)),
        *summary_rows(rem, now_ms)[1:3],
        ("time left", format_span(left_ms) if left_ms > 0 else "0s (due)"),
        ("occurrence", str(rem.occurrence)),
        ("attempts", str(rem.attempt)),
        ("misfire", rem.misfire.value),
        ("done", ", ".join(rem.done) or "-"),
    ]
    if is_recurring(rem.schedule):
        following = describe_next(rem.schedule, rem.due_at_ms, 3)
        rows += [("then" if i == 0 else "", format_when(ms, now_ms)) for i, ms in enumerate(following)]
    return rows
