"""The ``reminderd`` command line: run the daemon, and schedule, inspect and repair reminders.

Exit codes, mapped in one place (``main``): 0 ok, 1 not found, 2 bad input or config
(argparse errors included), 3 Redis unreachable or failing; ``status`` adds 4 (no live
daemon) and 5 (backlog older than ``daemon.backlog_alert``). Errors are one line each on
stderr, never a traceback, never a password.

Layout: ``parser`` builds the command tree, ``schedule`` and ``ops`` hold the commands,
``options`` reads schedule options, ``render`` prints.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import structlog
from redis.exceptions import RedisError

from reminderd.cli.ops import cmd_run
from reminderd.cli.parser import attach_values, build_parser
from reminderd.errors import ReminderdError
from reminderd.telemetry.logs import mask_secrets

__all__ = ["EXIT_INTERRUPTED", "EXIT_REDIS", "build_parser", "main"]

EXIT_REDIS = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run the command and return its exit code (errors mapped here)."""
    parser = build_parser()
    try:
        args = parser.parse_args(attach_values(sys.argv[1:] if argv is None else argv))
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
    """Print an error, every line prefixed with ``reminderd:``."""
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
