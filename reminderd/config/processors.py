"""Settings of the built-in processor kinds, told apart by their ``type`` field.

The union is matched exhaustively in ``reminderd.processors.registry`` so mypy flags a
kind added here but forgotten there.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, HttpUrl

from reminderd.config.base import Strict, TimeoutMs
from reminderd.config.sms import SmsSettings


class LogSettings(Strict):
    """The fire line is the log line; ``level: debug`` adds the payload to it."""

    type: Literal["log"] = "log"
    level: Literal["debug", "info", "warning"] = "info"  # warning: as info (kept for old configs)
    timeout_ms: TimeoutMs = Field(None, alias="timeout")


class WebhookSettings(Strict):
    """POST the occurrence as JSON; 2xx is success, 429/5xx/timeouts are retried."""

    type: Literal["webhook"]
    url: HttpUrl
    headers: dict[str, str] = Field(default_factory=dict)
    verify_tls: bool = True
    timeout_ms: TimeoutMs = Field(None, alias="timeout")


class StreamSettings(Strict):
    """XADD the occurrence to a Redis Stream for downstream consumer groups."""

    type: Literal["stream"]
    stream: str = Field(min_length=1)
    maxlen: int = Field(100_000, ge=1)
    timeout_ms: TimeoutMs = Field(None, alias="timeout")


class PluginSettings(Strict):
    """A third-party processor: ``module:Class`` path or an entry point name."""

    type: Literal["plugin"]
    path: str | None = Field(None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    entry_point: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    timeout_ms: TimeoutMs = Field(None, alias="timeout")


ProcessorSettings = Annotated[
    LogSettings | WebhookSettings | StreamSettings | SmsSettings | PluginSettings,
    Field(discriminator="type"),
]
