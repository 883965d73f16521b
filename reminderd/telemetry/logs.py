"""Structured logging: one event per line, JSON for machines, readable on a terminal.

Under systemd stdout goes to the journal, so ``auto`` renders one JSON object per line
there (``journalctl -u reminderd -o cat | jq``) and a coloured console format on a TTY.
Loggers are not cached, so ``configure_logging`` can run again (SIGHUP changes the level)
and every existing logger follows. Log records of libraries that use stdlib ``logging``
(aiohttp, redis) go through the same renderer, so the journal holds one format.

Secrets never reach the log: ``mask_secrets`` replaces values of keys that look like
credentials and passwords inside URLs, at any depth, after every other processor ran.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TextIO, cast

import orjson
import structlog
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

from reminderd.core.pii import SECRET_NAME, mask_url
from reminderd.errors import ConfigError
from reminderd.telemetry.log_output import LogOutput, output_for

Format = Literal["auto", "json", "console"]
LEVELS: Mapping[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
MASK = "***"
_NOISY_LIBRARIES = ("aiohttp",)  # its client and connector speak at INFO of connections, URLs included
_HANDLER_NAME = "reminderd"


_PLAIN = frozenset({int, float, bool, type(None)})  # nothing to mask: the common case, first


def _masked(value: Any, depth: int = 0) -> Any:
    """``value`` with nested secret keys and URL passwords replaced."""
    if type(value) in _PLAIN or depth > 8:
        return value
    if isinstance(value, str):
        return mask_url(value)
    if isinstance(value, Mapping):
        return {k: _masked_item(k, v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(item, depth + 1) for item in value]
    return value


def _masked_item(key: object, value: Any, depth: int) -> Any:
    """One mapping entry: masked whole if its key names a secret, else searched deeper."""
    return MASK if _is_secret_key(key) and value is not None else _masked(value, depth)


def _is_secret_key(key: object) -> bool:
    return isinstance(key, str) and _secret_name(key)


@functools.lru_cache(maxsize=4096)
def _secret_name(key: str) -> bool:
    """Cached: log events reuse a small set of field names, one regex search each is enough."""
    return SECRET_NAME.search(key) is not None


def mask_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Processor: mask values of keys named like passwords, tokens, auth, secrets.

    It runs for every line (one per fire at ``info``), so the common values (numbers,
    strings without a URL in them) are decided inline, without a call each.
    """
    for key, value in event_dict.items():  # values replaced in place: the keys stay as they are
        if value is not None and key != "event" and isinstance(key, str) and _secret_name(key):
            event_dict[key] = MASK
        elif type(value) is str:
            if "://" in value and "@" in value:
                event_dict[key] = mask_url(value)
        elif type(value) not in _PLAIN:
            event_dict[key] = _masked(value)
    return event_dict


def _dumps(obj: Any, **kwargs: Any) -> str:
    """orjson, falling back to ``str`` for what it cannot encode."""
    return orjson.dumps(obj, default=kwargs.get("default", str), option=orjson.OPT_NON_STR_KEYS).decode()


def _shared_processors(extra: Sequence[Processor]) -> list[Processor]:
    """Processors that run for structlog and stdlib records alike."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,  # render tracebacks before masking, so they are masked too
        *extra,
        mask_secrets,
    ]


def _renderer(fmt: Format, stream: LogOutput) -> list[Processor]:
    """The final processors: JSON lines, or the console renderer on a terminal."""
    if fmt == "json" or (fmt == "auto" and not stream.isatty()):
        return [structlog.processors.JSONRenderer(serializer=_dumps)]
    # plain tracebacks: the rich formatter would print local variables, secrets included
    return [
        for_operators,
        structlog.dev.ConsoleRenderer(
            colors=stream.isatty(), exception_formatter=structlog.dev.plain_traceback, sort_keys=False
        ),
    ]


_FIRST = ("timestamp", "level", "event", "key")  # what an operator scans a terminal line for


def for_operators(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """The console line's fields as an operator reads and writes them: the key right after the
    event, the rest in the order they were logged, containers as ``{log:ok}`` / ``[a,b]``,
    None as ``-``: no Python reprs."""
    first = {name: event_dict.pop(name) for name in _FIRST if name in event_dict}
    return {**first, **{name: _plain(value) for name, value in event_dict.items()}}


def _plain(value: Any) -> Any:
    if value is None:
        return "-"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{_plain(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(str(_plain(v)) for v in value) + "]"
    return value


def _check(level: str, fmt: str) -> int:
    """The numeric level; ConfigError naming the setting for bad values."""
    if fmt not in ("auto", "json", "console"):
        raise ConfigError(f"logging.format: unknown format {fmt!r} (expected auto, json or console)")
    number = LEVELS.get(level.lower())
    if number is None:
        raise ConfigError(f"logging.level: unknown level {level!r} (expected one of {', '.join(LEVELS)})")
    return number


def _route_stdlib(formatter: logging.Formatter, level: int, stream: LogOutput) -> None:
    """Replace our root handler (never anyone else's) so stdlib records share the format."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    handler = logging.StreamHandler(stream)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    root.addHandler(handler)
    root.setLevel(level)
    for name in _NOISY_LIBRARIES:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))


def configure_logging(
    level: str = "info",
    fmt: Format = "auto",
    extra_processors: Sequence[Processor] = (),
    *,
    stream: TextIO | None = None,
) -> None:
    """Configure structlog and stdlib logging; safe to call again to change level or format."""
    number = _check(level, fmt)
    out = output_for(stream if stream is not None else sys.stdout)
    shared = _shared_processors(extra_processors)
    final = _renderer(fmt, out)
    structlog.configure(
        processors=[*shared, *final],
        wrapper_class=structlog.make_filtering_bound_logger(number),
        logger_factory=structlog.WriteLoggerFactory(cast(TextIO, out)),  # one write (line + newline) each
        context_class=dict,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )
    _route_stdlib(formatter, number, out)


def get_logger(name: str | None = None, **initial: Any) -> FilteringBoundLogger:
    """A structlog logger; ``initial`` values are bound to every event it logs."""
    logger: FilteringBoundLogger = structlog.get_logger(name, **initial)
    return logger
