"""Build the configured processors: built-ins matched by settings type, plus plugins.

The match is exhaustive (``assert_never``), so mypy flags a processor kind added to
``ProcessorSettings`` but forgotten here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import assert_never

from reminderd.config.processors import (
    LogSettings,
    PluginSettings,
    ProcessorSettings,
    StreamSettings,
    WebhookSettings,
)
from reminderd.config.sms import SmsSettings
from reminderd.processors.base import Processor, ProcessorContext
from reminderd.processors.log import LogProcessor
from reminderd.processors.plugins import load_plugin
from reminderd.processors.stream import StreamProcessor


def build_processor(name: str, settings: ProcessorSettings, ctx: ProcessorContext) -> Processor:
    """One processor from its settings; plugin failures raise ``ConfigError``."""
    match settings:
        case LogSettings():
            return LogProcessor(name, settings, ctx)
        case WebhookSettings():
            # Imported here, like SMS: aiohttp loads only when a processor sends HTTP.
            from reminderd.processors.webhook import WebhookProcessor

            return WebhookProcessor(name, settings, ctx)
        case StreamSettings():
            return StreamProcessor(name, settings, ctx)
        case SmsSettings():
            # Imported here so the SMS provider code (and aiohttp) loads only when a rule uses it.
            from reminderd.processors.sms import SmsProcessor

            return SmsProcessor(name, settings, ctx)
        case PluginSettings():
            return load_plugin(name, settings, ctx)
        case _:
            assert_never(settings)


def build_processors(
    processors: Mapping[str, ProcessorSettings], ctx: ProcessorContext
) -> dict[str, Processor]:
    """Every configured processor by name. Constructors do no I/O, so nothing needs undoing on error."""
    return {name: build_processor(name, settings, ctx) for name, settings in processors.items()}


def timeout_ms_for(settings: ProcessorSettings, default_ms: int) -> int:
    """The processor's own ``timeout``, else the daemon's ``processor_timeout``."""
    return settings.timeout_ms if settings.timeout_ms is not None else default_ms
