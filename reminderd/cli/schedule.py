"""Commands on reminders: ``schedule``, ``reschedule``, ``cancel``, ``show`` and ``list``."""

from __future__ import annotations

from reminderd.api.status import format_instant, format_relative
from reminderd.cli.context import Ctx
from reminderd.cli.options import at_ms, payload_from_args, when_from_args
from reminderd.cli.render import (
    detail_rows,
    emit,
    for_display,
    print_rows,
    reminder_json,
    summary_rows,
    table,
)
from reminderd.core.schedules import describe_schedule
from reminderd.errors import InputError, NotFoundError
from reminderd.models import Misfire, Reminder


async def cmd_schedule(ctx: Ctx) -> int:
    """``schedule``: write (or replace) one reminder."""
    a = ctx.args
    api = ctx.api
    if a.key is not None and a.rule is not None:
        raise InputError("give either a key or --user/--type/--rule, not both")
    key = api.key_for(a.key, a.user, a.type, a.rule)
    when = when_from_args(a, await ctx.now_ms())
    misfire = Misfire(a.misfire) if a.misfire else None
    rem = await api.schedule(
        key, payload=payload_from_args(a), when=when, misfire=misfire, only_if_absent=a.only_if_absent
    )
    now_ms = await ctx.now_ms()
    if rem is None:
        emit({"key": key, "written": False}) if a.json else print(f"{key}: exists, left unchanged")
        return 0
    rem = for_display(rem, a.reveal)
    if a.json:
        emit({**reminder_json(rem, now_ms), "written": True})
    else:
        print_rows(summary_rows(rem, now_ms))
    return 0


async def cmd_reschedule(ctx: Ctx) -> int:
    """``reschedule``: change an existing reminder's schedule (and payload)."""
    a = ctx.args
    key = ctx.api.key_for(a.key, None, None, None)
    when = when_from_args(a, await ctx.now_ms())
    rem = for_display(await ctx.api.reschedule(key, when=when, payload=payload_from_args(a)), a.reveal)
    now_ms = await ctx.now_ms()
    emit(reminder_json(rem, now_ms)) if a.json else print_rows(summary_rows(rem, now_ms))
    return 0


async def cmd_cancel(ctx: Ctx) -> int:
    """``cancel``: remove a reminder (trigger key, record, index entry)."""
    key = ctx.args.key
    if not await ctx.api.cancel(key):
        raise NotFoundError(f"no reminder {key!r}")
    emit({"key": key, "cancelled": True}) if ctx.args.json else print(f"cancelled {key}")
    return 0


async def cmd_show(ctx: Ctx) -> int:
    """``show``: everything stored about one reminder, or a raw key's time left."""
    key = ctx.api.key_for(ctx.args.key, None, None, None)
    rem = await ctx.api.get(key)
    now_ms = await ctx.now_ms()
    if rem is not None:
        rem = for_display(rem, ctx.args.reveal)
        emit(reminder_json(rem, now_ms)) if ctx.args.json else print_rows(detail_rows(rem, now_ms))
        return 0
    pttl_ms = int(await ctx.client.pttl(key))
    if pttl_ms == -2:
        raise NotFoundError(f"no reminder {key!r}")
    if ctx.args.json:
        emit({"key": key, "raw": True, "pttl_ms": pttl_ms, "adopted": False})
    elif pttl_ms < 0:
        print_rows([("key", key), ("state", "raw key without an expiry: it never fires")])
    else:
        state = f"raw key, not yet adopted, fires {format_relative(now_ms + pttl_ms, now_ms)}"
        print_rows([("key", key), ("state", state), ("due", format_instant(now_ms + pttl_ms))])
    return 0


async def cmd_list(ctx: Ctx) -> int:
    """``list``: reminders by due time as a table (or JSON)."""
    a = ctx.args
    if a.limit < 1:
        raise InputError("--limit must be at least 1")
    if a.rule is not None and a.rule not in ctx.settings.rules:
        raise InputError(f"unknown rule {a.rule!r} (configured: {', '.join(ctx.settings.rules)})")
    now_ms = await ctx.now_ms()
    before = None if a.due_before is None else at_ms(a.due_before, now_ms, "UTC", "--due-before")
    found = await ctx.api.list(due_before=before, user=a.user, type=a.type, rule=a.rule, limit=a.limit)
    if a.json:
        emit([reminder_json(for_display(rem, a.reveal), now_ms) for rem in found])
    else:
        print(_list_table(found, now_ms))
    return 0


def _list_table(found: list[Reminder], now_ms: int) -> str:
    """The ``list`` table, or one line saying there is nothing."""
    header = ("KEY", "NEXT DUE", "IN", "SCHEDULE", "OCC", "ATTEMPTS")
    rows = [
        (
            r.key,
            format_instant(r.due_at_ms),
            format_relative(r.due_at_ms, now_ms),
            describe_schedule(r.schedule),
            str(r.occurrence),
            str(r.attempt),
        )
        for r in found
    ]
    return "\n".join(table(header, rows)) if rows else "no reminders"
