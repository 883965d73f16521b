"""Settings of the ``sms`` processor (Twilio-compatible or generic HTTP gateway).

Templates use ``str.format`` placeholders resolved by name only (``{user_id}``,
``{payload.name}``, ``{due_local:%H:%M}``), never attribute access or ``eval``. They are
parsed here, when the config loads, so a placeholder that can never resolve (an unknown
name, a conversion, a nested field) is a config error with its path; only ``payload.*``
fields can still be missing at send time. Rendering lives in
``reminderd.processors.templates`` (config sits below processors in the layers).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from string import Formatter
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, model_validator

from reminderd.config.base import Strict, TimeoutMs, ZoneName
from reminderd.core.durations import parse_duration_ms
from reminderd.core.pii import mask_phone

E164 = re.compile(r"\+[1-9][0-9]{6,14}")
MESSAGE_FIELDS = ("user_id", "type", "key", "rule", "occurrence", "tz", "due_local", "due_utc")
GATEWAY_FIELDS = (*MESSAGE_FIELDS, "to", "from", "body", "token", "idempotency_key")
_SAMPLES: dict[str, Any] = {
    "occurrence": 1,
    "due_local": datetime(2000, 1, 1, tzinfo=UTC),
    "due_utc": datetime(2000, 1, 1, tzinfo=UTC),
}
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class Placeholder:
    """One ``{path:spec}`` of a template; ``path`` is ``("payload", "name")`` or ``("user_id",)``."""

    path: tuple[str, ...]
    spec: str

    @property
    def name(self) -> str:
        """The placeholder as written, without braces and spec."""
        return ".".join(self.path)


Piece = tuple[str, Placeholder | None]  # literal text, then the placeholder after it (if any)


def parse_template(source: str, fields: tuple[str, ...]) -> tuple[Piece, ...]:
    """Split ``source`` into pieces; ``ValueError`` says what can never resolve."""
    try:
        parts = list(Formatter().parse(source))
    except ValueError as exc:
        raise ValueError(f"invalid template: {exc} (write {{{{ and }}}} for literal braces)") from exc
    pieces: list[Piece] = []
    for literal, field, spec, conversion in parts:
        if field is None:
            pieces.append((literal, None))
            continue
        if conversion:
            raise ValueError(f"placeholder {{{field}!{conversion}}}: conversions are not supported")
        if spec and "{" in spec:
            raise ValueError(f"placeholder {{{field}}}: nested placeholders are not supported")
        pieces.append((literal, _placeholder(field, spec or "", fields)))
    return tuple(pieces)


def template_roots(source: str) -> set[str]:
    """The first path element of every placeholder of a (valid) gateway template."""
    return {ph.path[0] for _, ph in parse_template(source, GATEWAY_FIELDS) if ph is not None}


def _placeholder(field: str, spec: str, fields: tuple[str, ...]) -> Placeholder:
    known = ", ".join((*fields, "payload.<field>"))
    path = tuple(field.split("."))
    if not all(_SEGMENT.fullmatch(part) for part in path):
        raise ValueError(f"invalid placeholder {{{field}}} (known: {known})")
    if path[0] == "payload":
        if len(path) == 1:
            raise ValueError("placeholder {payload} needs a field name, e.g. {payload.name}")
        return Placeholder(path, spec)
    if len(path) > 1 or path[0] not in fields:
        raise ValueError(f"unknown placeholder {{{field}}} (known: {known})")
    try:
        format(_SAMPLES.get(path[0], "text"), spec)
    except ValueError as exc:
        raise ValueError(f"placeholder {{{field}:{spec}}}: invalid format spec") from exc
    return Placeholder(path, spec)


def _message_template(source: str) -> str:
    parse_template(source, MESSAGE_FIELDS)
    return source


def _gateway_template(source: str) -> str:
    parse_template(source, GATEWAY_FIELDS)
    return source


def _e164(value: str) -> str:
    if not E164.fullmatch(value):
        raise ValueError(
            f"{mask_phone(value)!r} is not an E.164 number (+ and 7 to 15 digits, e.g. +14155550100)"
        )
    return value


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")) or not urlsplit(value).netloc:
        raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


MessageTemplate = Annotated[str, AfterValidator(_message_template)]
GatewayTemplate = Annotated[str, AfterValidator(_gateway_template)]
PhoneNumber = Annotated[str, AfterValidator(_e164)]
HttpBase = Annotated[str, AfterValidator(_http_url)]
DurationMs = Annotated[int, BeforeValidator(parse_duration_ms), Field(gt=0)]
FieldName = Annotated[str, Field(min_length=1, max_length=128)]


class TwilioSettings(Strict):
    """The Twilio Messages API (or a gateway speaking it): form POST with basic auth."""

    base_url: HttpBase = "https://api.twilio.com"
    account_sid: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    auth_token: SecretStr = Field(min_length=1)
    from_number: PhoneNumber | None = Field(None, alias="from")
    messaging_service_sid: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,64}$")

    @model_validator(mode="after")
    def _one_sender(self) -> TwilioSettings:
        if (self.from_number is None) == (self.messaging_service_sid is None):
            raise ValueError("twilio: give exactly one of 'from' or 'messaging_service_sid'")
        return self


class GenericSettings(Strict):
    """Any HTTP SMS gateway: method, URL, headers and body fields rendered from templates."""

    method: Literal["POST", "PUT", "GET"] = "POST"
    url: Annotated[GatewayTemplate, AfterValidator(_http_url)]
    headers: dict[str, GatewayTemplate] = Field(default_factory=dict)
    body: dict[str, GatewayTemplate] = Field(default_factory=dict)
    encoding: Literal["json", "form"] = "json"
    token: SecretStr | None = None  # available to templates as {token}, never logged
    username: str | None = None
    password: SecretStr | None = None
    from_number: PhoneNumber | None = Field(None, alias="from")
    success_status: tuple[int, ...] = Field((200, 201, 202), min_length=1)
    message_id_path: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
    message_id_regex: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> GenericSettings:
        if self.method == "GET" and self.body:
            raise ValueError("generic: 'body' is not allowed with method GET (put the fields in 'url')")
        if (self.username is None) != (self.password is None):
            raise ValueError("generic: give both 'username' and 'password' for basic auth, or neither")
        if self.message_id_path and self.message_id_regex:
            raise ValueError("generic: give 'message_id_path' or 'message_id_regex', not both")
        if self.message_id_regex is not None:
            _check_regex(self.message_id_regex)
        used = {root for source in self._templates() for root in template_roots(source)}
        for root, value in (("from", self.from_number), ("token", self.token)):
            if root in used and value is None:
                raise ValueError(f"generic: templates use {{{root}}} but '{root}' is not set")
        return self

    def _templates(self) -> list[str]:
        return [self.url, *self.headers.values(), *self.body.values()]


def _check_regex(pattern: str) -> None:
    try:
        groups = re.compile(pattern).groups
    except re.error as exc:
        raise ValueError(f"generic: message_id_regex: invalid regular expression: {exc}") from exc
    if groups != 1:
        raise ValueError("generic: message_id_regex must have exactly one group (the message id)")


class LookupSettings(Strict):
    """A Redis hash per user on the storage connection, e.g. ``user:{user_id}``."""

    key: str = Field("user:{user_id}", min_length=1)
    phone_field: FieldName = "phone"
    tz_field: FieldName | None = "tz"
    opt_out_field: FieldName | None = "sms_opt_out"

    @model_validator(mode="after")
    def _key_names_user(self) -> LookupSettings:
        rest = self.key.replace("{user_id}", "")
        if rest == self.key or "{" in rest or "}" in rest:
            raise ValueError("lookup.key must contain {user_id} and no other placeholder")
        return self

    def hash_key(self, user_id: str) -> str:
        """The lookup hash of ``user_id``."""
        return self.key.replace("{user_id}", user_id)

    @property
    def fields(self) -> dict[str, str]:
        """The hash field of each role (``phone``, ``tz``, ``opt_out``); unset roles left out."""
        roles = {"phone": self.phone_field, "tz": self.tz_field, "opt_out": self.opt_out_field}
        return {role: name for role, name in roles.items() if name}


class RecipientSettings(Strict):
    """Where the phone number and the time zone come from: payload first, then the lookup."""

    phone_field: FieldName = "phone"
    tz_field: FieldName = "tz"
    lookup: LookupSettings | None = None


class RateLimitSettings(Strict):
    """A token bucket shared through Redis by every daemon sending through one account."""

    per_second: float = Field(gt=0, le=100_000)
    burst: int = Field(1, ge=1, le=1_000_000)
    bucket: str | None = Field(None, pattern=r"^[A-Za-z0-9_.:-]{1,128}$")
    max_wait_ms: DurationMs = Field(2000, alias="max_wait")


class SmsSettings(Strict):
    """The ``sms`` processor: one provider section, templates per reminder type."""

    type: Literal["sms"]
    twilio: TwilioSettings | None = None
    generic: GenericSettings | None = None
    recipient: RecipientSettings = RecipientSettings()
    opt_out_field: FieldName | None = "sms_opt_out"
    templates: dict[str, MessageTemplate] = Field(min_length=1)
    timezone: ZoneName = "UTC"
    rate_limit: RateLimitSettings | None = None
    request_timeout_ms: DurationMs = Field(5000, alias="request_timeout")
    timeout_ms: TimeoutMs = Field(None, alias="timeout")

    @model_validator(mode="after")
    def _consistent(self) -> SmsSettings:
        if (self.twilio is None) == (self.generic is None):
            raise ValueError("give exactly one provider section: 'twilio' or 'generic'")
        if self.timeout_ms is not None:
            wait_ms = self.rate_limit.max_wait_ms if self.rate_limit else 0
            if wait_ms + self.request_timeout_ms >= self.timeout_ms:
                raise ValueError(
                    "timeout must be longer than request_timeout plus rate_limit.max_wait "
                    f"({self.request_timeout_ms} ms + {wait_ms} ms)"
                )
        return self

    @property
    def bucket(self) -> str:
        """The rate-limit bucket: configured, else the Twilio account, else the gateway host."""
        if self.rate_limit is not None and self.rate_limit.bucket:
            return self.rate_limit.bucket
        if self.twilio is not None:
            return self.twilio.account_sid
        assert self.generic is not None
        return urlsplit(self.generic.url).netloc
