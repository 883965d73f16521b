"""The ``reminderd`` command line: run the daemon, and schedule, inspect and repair reminders.

Exit codes, mapped in one place (``main``): 0 ok, 1 not found, 2 bad input or config
(argparse errors included), 3 Redis unreachable or failing; ``status`` adds 4 (no live
daemon) and 5 (backlog older than ``daemon.backlog_alert``). Errors are one line each on
stderr, never a traceback, never a password.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

import structlog
from redis.exceptions import RedisError

from reminderd import __version__
from reminderd.api import When
from reminderd.aps import load_zone
from reminderd.clientctx import Ctx, mask_url, with_client
from reminderd.config import describe, load_config, resolve_path
from reminderd.deadletters import DeadLetters
from reminderd.durations import parse_duration_ms
from reminderd.errors import InputError, NotFoundError, ReminderdError, ScheduleError
from reminderd.keys import Names
from reminderd.logs import mask_secrets
from reminderd.models import Misfire, Reminder
from reminderd.recurrence import describe_next, parse_at
from reminderd.schedules import describe_schedule, is_recurring, schedule_to_json
from reminderd.status import align, collect, format_instant, format_relative, format_span, format_when
from reminderd.status import render as render_status
from reminderd.status import to_json as status_json

EXIT_REDIS = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


def emit(data: Any) -> None:
    """Print ``--json`` output."""
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _lines(rows: list[tuple[str, str]]) -> None:
    print("\n".join(align(rows)))


# -- schedule options -------------------------------------------------------------------


def _span_ms(text: str, flag: str) -> int:
    try:
        return parse_duration_ms(text)
    except ValueError as exc:
        raise InputError(f"{flag}: {exc}") from exc


def _at_ms(text: str, now_ms: int, tz: str, flag: str) -> int:
    try:
        at_ms = parse_at(text, now_ms, tz)
    except ScheduleError as exc:
        raise ScheduleError(f"{flag}: {exc}") from exc
    if at_ms < 0:
        raise ScheduleError(f"{flag}: time must not be before 1970-01-01T00:00:00Z")
    return at_ms


def when_from_args(args: argparse.Namespace, now_ms: int) -> When:
    """The ``When`` of ``--in/--at/--every/--cron/--tz``; conflicts are input errors."""
    if args.in_ is not None and args.at is not None:
        raise InputError("--in and --at cannot be combined (both set the first due time)")
    if args.every is not None and args.cron is not None:
        raise InputError("--every and --cron cannot be combined")
    if all(v is None for v in (args.in_, args.at, args.every, args.cron)):
        raise InputError("give one of --in, --at, --every or --cron")
    if args.tz is not None and args.cron is None and args.at is None:
        raise InputError("--tz applies only to --cron and --at")
    tz = args.tz or "UTC"
    try:
        load_zone(tz)
    except ScheduleError as exc:
        raise ScheduleError(f"--tz: {exc}") from exc
    return When(
        at=None if args.at is None else _at_ms(args.at, now_ms, tz, "--at"),
        in_=None if args.in_ is None else _span_ms(args.in_, "--in"),
        every=None if args.every is None else _span_ms(args.every, "--every"),
        cron=args.cron,
        tz=tz,
    )


def payload_from_args(args: argparse.Namespace) -> str | None:
    """The payload text of ``--payload`` or ``--payload-file`` (``-`` is stdin), if any."""
    if args.payload is not None and args.payload_file is not None:
        raise InputError("give either --payload or --payload-file, not both")
    if args.payload_file is None:
        return str(args.payload) if args.payload is not None else None
    if args.payload_file == "-":
        return sys.stdin.read()
    try:
        with open(args.payload_file, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise InputError(f"--payload-file: cannot read {args.payload_file}: {reason}") from exc


# -- rendering reminders ----------------------------------------------------------------


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


def _summary_rows(rem: Reminder, now_ms: int) -> list[tuple[str, str]]:
    return [
        ("key", rem.key),
        ("schedule", describe_schedule(rem.schedule)),
        ("next due", format_when(rem.due_at_ms, now_ms)),
        ("occurrence", str(rem.occurrence)),
    ]


def _detail_rows(rem: Reminder, now_ms: int) -> list[tuple[str, str]]:
    left_ms = rem.due_at_ms - now_ms
    rows = [
        *_summary_rows(rem, now_ms)[:1],
        ("rule", rem.rule or "-"),
        ("user", rem.user_id or "-"),
        ("type", rem.type or "-"),
        ("payload", json.dumps(dict(rem.payload), ensure_ascii=False)),
        *_summary_rows(rem, now_ms)[1:3],
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


# -- commands ---------------------------------------------------------------------------


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
    if a.json:
        emit({**reminder_json(rem, now_ms), "written": True})
    else:
        _lines(_summary_rows(rem, now_ms))
    return 0


async def cmd_reschedule(ctx: Ctx) -> int:
    """``reschedule``: change an existing reminder's schedule (and payload)."""
    a = ctx.args
    key = ctx.api.key_for(a.key, None, None, None)
    when = when_from_args(a, await ctx.now_ms())
    rem = await ctx.api.reschedule(key, when=when, payload=payload_from_args(a))
    now_ms = await ctx.now_ms()
    emit(reminder_json(rem, now_ms)) if a.json else _lines(_summary_rows(rem, now_ms))
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
        emit(reminder_json(rem, now_ms)) if ctx.args.json else _lines(_detail_rows(rem, now_ms))
        return 0
    pttl_ms = int(await ctx.client.pttl(key))
    if pttl_ms == -2:
        raise NotFoundError(f"no reminder {key!r}")
    if ctx.args.json:
        emit({"key": key, "raw": True, "pttl_ms": pttl_ms, "adopted": False})
    elif pttl_ms < 0:
        _lines([("key", key), ("state", "raw key without an expiry: it never fires")])
    else:
        state = f"raw key, not yet adopted, fires {format_relative(now_ms + pttl_ms, now_ms)}"
        _lines([("key", key), ("state", state), ("due", format_instant(now_ms + pttl_ms))])
    return 0


async def cmd_list(ctx: Ctx) -> int:
    """``list``: reminders by due time as a table (or JSON)."""
    a = ctx.args
    if a.limit < 1:
        raise InputError("--limit must be at least 1")
    if a.rule is not None and a.rule not in ctx.settings.rules:
        raise InputError(f"unknown rule {a.rule!r} (configured: {', '.join(ctx.settings.rules)})")
    now_ms = await ctx.now_ms()
    before = None if a.due_before is None else _at_ms(a.due_before, now_ms, "UTC", "--due-before")
    found = await ctx.api.list(due_before=before, user=a.user, type=a.type, rule=a.rule, limit=a.limit)
    if a.json:
        emit([reminder_json(rem, now_ms) for rem in found])
        return 0
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
    print("\n".join(table(header, rows)) if rows else "no reminders")
    return 0


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns separated by two spaces."""
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
    return [
        "  ".join(f"{c:<{w}}" for c, w in zip(row, widths, strict=True)).rstrip() for row in (header, *rows)
    ]


async def cmd_status(ctx: Ctx) -> int:
    """``status``: health report; the exit code is the monitoring verdict."""
    kwargs = ctx.client.connection_pool.connection_kwargs
    target = mask_url(
        f"unix://{kwargs['path']}"
        if "path" in kwargs
        else f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
    )
    report = await collect(ctx.client, ctx.settings, target)
    emit(status_json(report)) if ctx.args.json else print("\n".join(render_status(report)))
    return report.exit_code


async def cmd_dead_list(ctx: Ctx) -> int:
    """``dead list``: the newest dead letters."""
    dead = DeadLetters(ctx.client, Names(ctx.settings.namespace))
    found = await dead.newest(ctx.args.limit)
    if ctx.args.json:
        emit([{**asdict(d), "payload": dict(d.payload), "processors": list(d.processors)} for d in found])
        return 0
    header = ("ID", "KEY", "OCC", "REASON", "ATTEMPTS", "PENDING", "DEAD AT", "ERROR")
    rows = [
        (d.id, d.key, str(d.occurrence), d.reason, str(d.attempts), ",".join(d.processors) or "-",
         format_instant(d.dead_at_ms), _short(d.error))
        for d in found
    ]  # fmt: skip
    print("\n".join(table(header, rows)) if rows else "no dead letters")
    return 0


def _short(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _one_or_all(args: argparse.Namespace) -> str | None:
    if args.id is not None and args.all:
        raise InputError("give either a dead-letter id or --all, not both")
    if args.id is None and not args.all:
        raise InputError("give a dead-letter id or --all")
    return None if args.all else str(args.id)


async def cmd_dead_replay(ctx: Ctx) -> int:
    """``dead replay``: schedule dead letters again, due now."""
    entry_id = _one_or_all(ctx.args)
    dead = DeadLetters(ctx.client, Names(ctx.settings.namespace))
    done = await dead.replay_all() if entry_id is None else [await dead.replay(entry_id)]
    if ctx.args.json:
        emit([asdict(r) for r in done])
        return 0
    for r in done:
        beside = " (auxiliary record beside the live reminder)" if r.aux else ""
        print(f"replayed {r.id}: {r.key} occurrence {r.occurrence}{beside}")
    if entry_id is None:
        print(f"replayed {len(done)} dead letter{'' if len(done) == 1 else 's'}")
    return 0


async def cmd_dead_purge(ctx: Ctx) -> int:
    """``dead purge``: delete one dead letter, or all."""
    entry_id = _one_or_all(ctx.args)
    dead = DeadLetters(ctx.client, Names(ctx.settings.namespace))
    if entry_id is not None:
        await dead.purge(entry_id)
        emit({"purged": 1, "id": entry_id}) if ctx.args.json else print(f"purged {entry_id}")
        return 0
    count = await dead.purge_all()
    emit({"purged": count}) if ctx.args.json else print(f"purged {count} dead letters")
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    """``check-config``: validate the file; errors are raised and mapped by ``main``."""
    settings = load_config(args.config)
    path, named = resolve_path(args.config)
    shown = str(path) if named or path.exists() else f"{path} not found, built-in defaults"
    if args.json:
        emit({"ok": True, "file": shown, "settings": describe(settings)})
    else:
        print(f"ok: {shown}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """``run``: the daemon (imported lazily: the other commands do not need it)."""
    from reminderd.daemon import run_daemon

    return run_daemon(args.config)


# -- entry point ------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run the command and return its exit code (errors mapped here)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    if args.command == "run":
        return cmd_run(args)
    previous = structlog.get_config()
    _quiet_logs()
    try:
        return int(args.handler(args))
    except ReminderdError as exc:
        _error(str(exc))
        return exc.exit_code
    except RedisError as exc:
        _error(f"Redis error: {exc}")
        return EXIT_REDIS
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        structlog.configure(**previous)


def _error(message: str) -> None:
    for line in message.splitlines() or [""]:
        print(f"reminderd: {line}", file=sys.stderr)


def _quiet_logs() -> None:
    """For a command's duration, only errors are logged, to stderr, secrets masked."""
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            mask_secrets,
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "check-config": cmd_check_config,
    "schedule": with_client(cmd_schedule),
    "reschedule": with_client(cmd_reschedule),
    "cancel": with_client(cmd_cancel),
    "show": with_client(cmd_show),
    "list": with_client(cmd_list),
    "status": with_client(cmd_status),
    "dead list": with_client(cmd_dead_list),
    "dead replay": with_client(cmd_dead_replay),
    "dead purge": with_client(cmd_dead_purge),
}


# -- argument parser --------------------------------------------------------------------


def _common(suppress: bool) -> argparse.ArgumentParser:
    """``-c/--config`` and ``--json``, accepted before and after the command name."""
    default = argparse.SUPPRESS if suppress else None
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c", "--config", metavar="FILE", default=default,
        help="config file (default: $REMINDERD_CONFIG, else config/reminderd.yaml)",
    )  # fmt: skip
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS if suppress else False,
        help="machine-readable output",
    )  # fmt: skip
    return common


def _schedule_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--in", dest="in_", metavar="DURATION", help="first due after a delay (10s, 5m, 1h30m)")
    p.add_argument("--at", metavar="TIME", help="first due at a time (ISO-8601, @epoch, +5m, now)")
    p.add_argument("--every", metavar="DURATION", help="repeat at a fixed interval (24h)")
    p.add_argument("--cron", metavar="EXPR", help="repeat on a cron expression ('0 9 * * *')")
    p.add_argument(
        "--tz", metavar="ZONE", help="IANA zone of --cron and of --at without offset (default UTC)"
    )
    p.add_argument("--payload", metavar="JSON", help="payload, a JSON object")
    p.add_argument("--payload-file", metavar="FILE", help="read the payload from FILE ('-' for stdin)")


def _add(sub: Any, name: str, handler: str, common: argparse.ArgumentParser, **kw: Any) -> Any:
    p = sub.add_parser(name, parents=[common], **kw)
    p.set_defaults(handler=HANDLERS[handler], command=handler)
    return p


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree."""
    common = _common(suppress=True)
    parser = argparse.ArgumentParser(
        prog="reminderd", parents=[_common(suppress=False)], description="Per-user reminders from Redis."
    )
    parser.add_argument("--version", action="version", version=f"reminderd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", parents=[common], help="run the daemon")
    run.set_defaults(command="run")
    _add(sub, "check-config", "check-config", common, help="validate the config file")
    p = _add(sub, "schedule", "schedule", common, help="schedule (or replace) a reminder")
    p.add_argument("key", nargs="?", metavar="KEY", help="trigger key <prefix>-<userId>-<type>")
    p.add_argument("--user", help="user id (with --type, instead of KEY)")
    p.add_argument("--type", help="reminder type (no '-')")
    p.add_argument("--rule", help="rule prefix (default: the first configured rule)")
    _schedule_options(p)
    p.add_argument("--misfire", choices=[m.value for m in Misfire], help="policy for missed occurrences")
    p.add_argument("--only-if-absent", action="store_true", help="leave an existing reminder unchanged")
    p = _add(sub, "reschedule", "reschedule", common, help="change an existing reminder's schedule")
    p.add_argument("key", metavar="KEY")
    _schedule_options(p)
    for name, text in (("cancel", "cancel a reminder"), ("show", "show one reminder")):
        _add(sub, name, name, common, help=text).add_argument("key", metavar="KEY")
    p = _add(sub, "list", "list", common, help="list reminders by due time")
    p.add_argument("--due-before", metavar="TIME", help="only those due before TIME")
    p.add_argument("--user")
    p.add_argument("--type")
    p.add_argument("--rule")
    p.add_argument("--limit", type=int, default=100, metavar="N")
    _add(sub, "status", "status", common, help="health report (exit 4: no daemon, 5: backlog)")
    _dead_parser(sub, common)
    return parser


def _dead_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    dead = sub.add_parser("dead", help="dead letters: list, replay, purge")
    dsub = dead.add_subparsers(dest="dead_command", required=True, metavar="ACTION")
    p = _add(dsub, "list", "dead list", common, help="newest dead letters first")
    p.add_argument("--limit", type=int, default=50, metavar="N")
    for name, text in (("replay", "schedule again, due now"), ("purge", "delete")):
        p = _add(dsub, name, f"dead {name}", common, help=text)
        p.add_argument("id", nargs="?", metavar="ID")
        p.add_argument("--all", action="store_true")
