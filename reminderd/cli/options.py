"""Turning schedule options (``--in/--at/--every/--cron/--tz``, payload) into API values.

Every message names the flag it is about, so a bad value is found without reading code.
"""

from __future__ import annotations

import argparse
import sys

from reminderd.api.reminders import When
from reminderd.core.durations import parse_duration_ms
from reminderd.core.recurrence import parse_at
from reminderd.core.zones import load_zone
from reminderd.errors import InputError, ScheduleError


def span_ms(text: str, flag: str) -> int:
    """A duration option in milliseconds."""
    try:
        return parse_duration_ms(text)
    except ValueError as exc:
        raise InputError(f"{flag}: {exc}") from exc


def at_ms(text: str, now_ms: int, tz: str, flag: str) -> int:
    """A time option as epoch milliseconds; times before the epoch are refused."""
    try:
        when_ms = parse_at(text, now_ms, tz)
    except ScheduleError as exc:
        raise ScheduleError(f"{flag}: {exc}") from exc
    if when_ms < 0:
        raise ScheduleError(f"{flag}: time must not be before 1970-01-01T00:00:00Z")
    return when_ms


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
        at=None if args.at is None else at_ms(args.at, now_ms, tz, "--at"),
        in_=None if args.in_ is None else span_ms(args.in_, "--in"),
        every=None if args.every is None else span_ms(args.every, "--every"),
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
