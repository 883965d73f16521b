"""Configuration reload (SIGHUP): the runtime the pipeline runs with, built and swapped.

A reload builds new processors from the new settings and puts them in the pipeline's
context between two occurrences; what started with the old ones finishes with them, and they are
closed once it must have. A bad configuration changes nothing. Settings that shape the
daemon's resources (Redis connection, namespace, metrics endpoint) keep their start-up
values until a restart; each differing one is named in a warning.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog

from reminderd.config import Settings, load_config
from reminderd.core.pii import mask_pii
from reminderd.errors import ReminderdError
from reminderd.pipeline.runtime import Context, Runtime
from reminderd.processors.base import ProcessorContext
from reminderd.processors.registry import build_processors, timeout_ms_for
from reminderd.telemetry.logs import configure_logging

log = structlog.get_logger("reminderd.daemon.reload")
RESTART_ONLY = ("redis", "namespace", "metrics")  # settings a reload keeps as they were at start


def build_runtime(settings: Settings, ctx: ProcessorContext) -> Runtime:
    """Processors and their timeouts from validated settings (no I/O)."""
    processors = build_processors(settings.processors, ctx)
    default_ms = settings.daemon.processor_timeout_ms
    timeouts = {name: timeout_ms_for(p, default_ms) / 1000 for name, p in settings.processors.items()}
    return Runtime(settings, processors, timeouts)


def reload_runtime(ctx: Context, config_path: Path | None, processor_ctx: ProcessorContext) -> Runtime | None:
    """Load the configuration again and put it in force in ``ctx``; the replaced runtime.

    None if the configuration is bad: the error is logged and the running one kept.
    """
    try:
        new = load_config(config_path, required=config_path is not None)
        runtime = build_runtime(new, processor_ctx)
    except ReminderdError as exc:
        log.error("config.reload_failed", error=str(exc), note="keeping the running configuration")
        return None
    kept = {part: getattr(ctx.settings, part) for part in RESTART_ONLY}
    for part, value in kept.items():
        if getattr(new, part) != value:
            log.warning("config.reload_partial", setting=part, note="takes effect after a restart")
    old = ctx.runtime
    ctx.runtime = Runtime(new.model_copy(update=kept), runtime.processors, runtime.timeouts_s)
    configure_logging(new.logging.level, new.logging.format, [mask_pii])
    log.info("config.reloaded", rules=list(new.rules), processors=list(new.processors))
    return old


async def close_processors(runtime: Runtime) -> None:
    """Close every processor of ``runtime``; one that fails to close does not stop the rest."""
    for proc in runtime.processors.values():
        try:
            await proc.aclose()
        except Exception as exc:
            log.debug("cleanup.failed", error=str(exc))


async def close_later(old: Runtime) -> None:
    """Close replaced processors once nothing that started with them can still be running.

    Run as a task of the daemon: cancelled when the daemon stops, it closes them at once,
    since the drain before has ended whatever used them.
    """
    try:
        await asyncio.sleep(old.settings.daemon.processor_timeout_ms / 1000 + 1)
    finally:
        await close_processors(old)
