"""The argparse command tree; each leaf command carries its handler in ``args.handler``."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence
from typing import Any

from reminderd import __version__
from reminderd.cli.context import with_client
from reminderd.cli.ops import cmd_check_config, cmd_dead_list, cmd_dead_purge, cmd_dead_replay, cmd_status
from reminderd.cli.raw import cmd_redis_cli
from reminderd.cli.schedule import cmd_cancel, cmd_list, cmd_reschedule, cmd_schedule, cmd_show
from reminderd.models import Misfire

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
    "redis-cli": with_client(cmd_redis_cli),
}


# Options whose value may start with "-": argparse would take "--in -5s" for two options.
_VALUE_OPTIONS = frozenset({"--in", "--at", "--every", "--due-before"})


def attach_values(argv: Sequence[str]) -> list[str]:
    """``--in -5s`` as ``--in=-5s``, so a negative value meets its own message, not a usage dump.

    Everything after ``redis-cli`` is a raw Redis command and left as it is.
    """
    out: list[str] = []
    rest = list(argv)
    while rest:
        arg = rest.pop(0)
        if arg == "redis-cli":
            return [*out, arg, *rest]
        if arg in _VALUE_OPTIONS and rest and re.match(r"-\d", rest[0]):
            arg = f"{arg}={rest.pop(0)}"
        out.append(arg)
    return out


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
    _schedule_parsers(sub, common)
    for name, text in (("cancel", "cancel a reminder"), ("show", "show one reminder")):
        _add(sub, name, name, common, help=text).add_argument("key", metavar="KEY")
    _list_parser(sub, common)
    _add(sub, "status", "status", common, help="health report (exit 4: no daemon, 5: backlog)")
    _dead_parser(sub, common)
    raw = _add(sub, "redis-cli", "redis-cli", common, help="send one raw command to reminderd's Redis")
    raw.add_argument("argv", nargs=argparse.REMAINDER, metavar="CMD [ARG ...]")
    return parser


def _common(suppress: bool) -> argparse.ArgumentParser:
    """``-c/--config`` and ``--json``, accepted before and after the command name."""
    default = argparse.SUPPRESS if suppress else None
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c", "--config", metavar="FILE", default=default,
        help="config file (default: $REMINDERD_CONFIG, config/reminderd.yaml, /etc/reminderd/reminderd.yaml)",
    )  # fmt: skip
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS if suppress else False,
        help="machine-readable output",
    )  # fmt: skip
    common.add_argument(
        "--reveal", action="store_true", default=argparse.SUPPRESS if suppress else False,
        help="show payloads unmasked (phone numbers and secret-named fields are masked otherwise)",
    )  # fmt: skip
    return common


def _add(sub: Any, name: str, handler: str, common: argparse.ArgumentParser, **kw: Any) -> Any:
    """A subcommand parser wired to ``HANDLERS[handler]``."""
    p = sub.add_parser(name, parents=[common], **kw)
    p.set_defaults(handler=HANDLERS[handler], command=handler)
    return p


def _schedule_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """``schedule`` and ``reschedule``, which share the timing and payload options."""
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


def _schedule_options(p: argparse.ArgumentParser) -> None:
    """The timing and payload options read by ``reminderd.cli.options``."""
    p.add_argument("--in", dest="in_", metavar="DURATION", help="first due after a delay (10s, 5m, 1h30m)")
    p.add_argument("--at", metavar="TIME", help="first due at a time (ISO-8601, @epoch, +5m, now)")
    p.add_argument("--every", metavar="DURATION", help="repeat at a fixed interval (24h)")
    p.add_argument("--cron", metavar="EXPR", help="repeat on a cron expression ('0 9 * * *')")
    p.add_argument(
        "--tz", metavar="ZONE", help="IANA zone of --cron and of --at without offset (default UTC)"
    )
    p.add_argument("--payload", metavar="JSON", help="payload, a JSON object")
    p.add_argument("--payload-file", metavar="FILE", help="read the payload from FILE ('-' for stdin)")


def _list_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """``list`` and its filters."""
    p = _add(sub, "list", "list", common, help="list reminders by due time")
    p.add_argument("--due-before", metavar="TIME", help="only those due before TIME")
    p.add_argument("--user")
    p.add_argument("--type")
    p.add_argument("--rule")
    p.add_argument("--limit", type=int, default=100, metavar="N")


def _dead_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """``dead list|replay|purge``."""
    dead = sub.add_parser("dead", help="dead letters: list, replay, purge")
    dsub = dead.add_subparsers(dest="dead_command", required=True, metavar="ACTION")
    p = _add(dsub, "list", "dead list", common, help="newest dead letters first")
    p.add_argument("--limit", type=int, default=50, metavar="N")
    for name, text in (("replay", "schedule again, due now"), ("purge", "delete")):
        p = _add(dsub, name, f"dead {name}", common, help=text)
        p.add_argument("id", nargs="?", metavar="ID")
        p.add_argument("--all", action="store_true")
