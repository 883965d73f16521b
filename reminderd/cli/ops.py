"""Operating commands: ``run``, ``check-config``, ``status`` and ``dead list/replay/purge``."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from reminderd.api.cluster_status import collect_cluster
from reminderd.api.deadletters import DeadLetters, Replayed
from reminderd.api.status import collect, format_instant
from reminderd.api.status import render as render_status
from reminderd.api.status import to_json as status_json
from reminderd.cli.context import Ctx
from reminderd.cli.progress import Progress
from reminderd.cli.render import emit, masked, short, table
from reminderd.config import describe, load_config, resolve_path
from reminderd.core.pii import mask_url
from reminderd.errors import InputError
from reminderd.storage.cluster import is_cluster
from reminderd.storage.names import Names


def cmd_run(args: argparse.Namespace) -> int:
    """``run``: the daemon (imported lazily: the other commands do not need it)."""
    from reminderd.daemon.lifecycle import run_daemon

    return run_daemon(args.config)


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


async def cmd_status(ctx: Ctx) -> int:
    """``status``: health report; the exit code is the monitoring verdict."""
    if is_cluster(ctx.client):  # the shards, and every node on its own
        report = await collect_cluster(ctx.client, ctx.settings, ctx.settings.redis.url, ctx.api.store)
    else:
        report = await collect(ctx.client, ctx.settings, _target(ctx))
    emit(status_json(report)) if ctx.args.json else print("\n".join(render_status(report)))
    return report.exit_code


def _target(ctx: Ctx) -> str:
    """The Redis the command talks to, as a URL fit to print (password masked)."""
    if ctx.settings.redis.sentinel is not None:
        return ctx.settings.redis.url  # the canonical sentinel URL: no credentials
    kwargs = ctx.client.connection_pool.connection_kwargs
    return mask_url(
        f"unix://{kwargs['path']}"
        if "path" in kwargs
        else f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
    )


async def cmd_dead_list(ctx: Ctx) -> int:
    """``dead list``: the newest dead letters."""
    dead = DeadLetters(ctx.client, Names(ctx.settings.namespace), ctx.api.store)
    found = await dead.newest(ctx.args.limit)
    if ctx.args.json:
        letters = [{**asdict(d), "payload": dict(d.payload), "processors": list(d.processors)} for d in found]
        emit([{**x, **masked({k: x[k] for k in ("payload", "error")}, ctx.args.reveal)} for x in letters])
        return 0
    header = ("ID", "KEY", "OCC", "REASON", "ATTEMPTS", "PENDING", "DEAD AT", "ERROR")
    rows = [
        (d.id, d.key, str(d.occurrence), d.reason, str(d.attempts), ",".join(d.processors) or "-",
         format_instant(d.dead_at_ms), short(masked(d.error, ctx.args.reveal)))
        for d in found
    ]  # fmt: skip
    print("\n".join(table(header, rows)) if rows else "no dead letters")
    return 0


def _one_or_all(args: argparse.Namespace) -> str | None:
    """The dead-letter id given, or ``None`` for ``--all``; exactly one is required."""
    if args.id is not None and args.all:
        raise InputError("give either a dead-letter id or --all, not both")
    if args.id is None and not args.all:
        raise InputError("give a dead-letter id or --all")
    return None if args.all else str(args.id)


async def cmd_dead_replay(ctx: Ctx) -> int:
    """``dead replay``: schedule dead letters again, due now."""
    entry_id = _one_or_all(ctx.args)
    dead = DeadLetters(ctx.client, Names(ctx.settings.namespace), ctx.api.store)
    done = await _replay_all(dead) if entry_id is None else [await dead.replay(entry_id)]
    if ctx.args.json:
        emit([asdict(r) for r in done])
        return 0
    for r in done:
        beside = " (auxiliary record beside the live reminder)" if r.aux else ""
        print(f"replayed {r.id}: {r.key} occurrence {r.occurrence}{beside}")
    if entry_id is None:
        print(f"replayed {len(done)} dead letter{'' if len(done) == 1 else 's'}")
    return 0


async def _replay_all(dead: DeadLetters) -> list[Replayed]:
    """Every dead letter replayed, with a progress line on a terminal."""
    progress = Progress("replaying", await dead.count())
    done: list[Replayed] = []
    try:
        async for replayed in dead.replay_each():
            done.append(replayed)
            progress.advance()
    finally:
        progress.close()
    return done


async def cmd_dead_purge(ctx: Ctx) -> int:
    """``dead purge``: delete one dead letter, or all."""
    entry_id = _one_or_all(ctx.args)
    dead = DeadLetters(ctx.client, Names(ctx.settings.namespace), ctx.api.store)
    if entry_id is not None:
        await dead.purge(entry_id)
        emit({"purged": 1, "id": entry_id}) if ctx.args.json else print(f"purged {entry_id}")
        return 0
    count = await dead.purge_all()
    emit({"purged": count}) if ctx.args.json else print(f"purged {count} dead letters")
    return 0
