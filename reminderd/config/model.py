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

from reminderd.config.base import Float, Int, Strict, ZoneName
from reminderd.config.cluster import (
    CLUSTER_SCHEMES,
    CLUSTER_SHARDS,
    MAX_SHARDS,
    ClusterSettings,
    ShardCount,
    WaitReplicas,
    with_cluster_section,
)
from reminderd.config.processors import LogSettings, ProcessorSettings
from reminderd.config.sentinel import SENTINEL_SCHEME, SentinelSettings, with_sentinel_section
from reminderd.config.transport import EmbeddedSettings, TlsSettings
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


MAX_WAIT_REPLICAS = 16  # more replicas than any Sentinel deployment runs: a typo
MAX_WAIT_TIMEOUT_MS = 10_000  # each claim and finish may wait this long: past it the pipeline stalls


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
    sentinel: SentinelSettings | None = None
    cluster: ClusterSettings | None = None
    # WAIT after each claim and finish: 0 (off), or the replicas that must acknowledge them
    wait_replicas: WaitReplicas = Field(0, ge=0, le=MAX_WAIT_REPLICAS)
    wait_timeout_ms: PositiveMs = Field(100, alias="wait_timeout", le=MAX_WAIT_TIMEOUT_MS)
    # Shards of reminderd's keys: more than one on Cluster only (None: the target's default)
    shards: ShardCount = Field(None, ge=1, le=MAX_SHARDS)

    @property
    def shard_count(self) -> int:
        """The shards in force: ``shards``, else ``CLUSTER_SHARDS`` on Cluster, 1 otherwise."""
        return self.shards if self.shards is not None else (CLUSTER_SHARDS if self.cluster else 1)

    @model_validator(mode="before")
    @classmethod
    def _sentinel_url(cls, data: Any) -> Any:
        """A ``redis+sentinel://`` (``redis+cluster://``) URL is the ``sentinel`` (``cluster``)
        section written as one string."""
        return with_sentinel_section(with_cluster_section(data))

    @model_validator(mode="after")
    def _one_target(self) -> RedisSettings:
        """With Sentinel or Cluster, ``url`` becomes the canonical URL: the one name of the target."""
        if self.cluster is not None:
            object.__setattr__(self, "url", self.cluster.url)  # frozen; this is still its validation
            return self
        if self.sentinel is None:
            return self
        if "url" in self.model_fields_set and not self.url.startswith(SENTINEL_SCHEME):
            raise ValueError("url and sentinel are mutually exclusive: set one of them")
        object.__setattr__(self, "url", self.sentinel.url)  # frozen; this is still its validation
        return self

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
        schemes = ("redis://", "rediss://", "unix://", SENTINEL_SCHEME, *CLUSTER_SCHEMES)
        if url != "embedded" and not url.startswith(schemes):
            shown = mask_url(url)
            raise ValueError(
                "must be 'embedded' or start with redis://, rediss://, unix://, redis+sentinel:// "
                f"or redis+cluster://, got {shown!r}"
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
    # A raw key never seen alive (it expired before any daemon adopted it): fire on its
    # expired event alone (the raw-key contract; anyone who may PUBLISH can forge one), or
    # never (logged and counted as reminder.lost).
    unseen_raw: Literal["fire", "never"] = "fire"


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
    # Adopt raw keys as they are written and follow their TTL (keyspace events of the rule
    # prefixes, notify flags Kg); off: raw keys are seen by the adoption scan and at expiry.
    raw_key_events: bool = True
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
