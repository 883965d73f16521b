"""The ``sms`` processor: one text message per occurrence through Twilio or an HTTP gateway.

Steps, each with its own failure kind: read the user's lookup hash (Redis errors are
retryable); skip an opted-out user (``SkipOccurrence``, logged as ``reminder.skipped``);
find and validate the E.164 number (missing or invalid is permanent); render the type's
template completely (a missing field is permanent); wait for a token of the account's
shared rate limit (in this coroutine only, bounded by ``rate_limit.max_wait``); send.
Provider answers: 2xx is success, 429/5xx/timeouts are retryable with ``Retry-After``,
any other 4xx is permanent with the provider's error code.

Phone numbers appear only masked in logs, errors and the returned details; the message
body is logged at debug level only; credentials never appear anywhere.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NoReturn, Protocol, TypeVar
from urllib.parse import quote

import redis.asyncio as aioredis

from reminderd.config.sms import (
    E164,
    GATEWAY_FIELDS,
    MESSAGE_FIELDS,
    GenericSettings,
    SmsSettings,
    TwilioSettings,
)
from reminderd.core.pii import mask_phone, mask_text
from reminderd.core.quiet_hours import user_zone
from reminderd.errors import PermanentError, RetryableError, SkipOccurrence
from reminderd.models import Occurrence
from reminderd.processors.base import ProcessorContext
from reminderd.processors.http import basic_auth, excerpt, refuse
from reminderd.processors.http_client import HttpAnswer, HttpClient
from reminderd.processors.templates import Template, message_values
from reminderd.storage.ratelimit import TokenBucket

UNKNOWN_ID = "unknown"
_T = TypeVar("_T")
_TRUE = frozenset({"1", "true", "yes", "on", "y"})


def is_opted_out(value: object) -> bool:
    """Whether a flag value (payload JSON or a hash string) means "opted out"."""
    if isinstance(value, bool | int):
        return bool(value)
    return isinstance(value, str) and value.strip().lower() in _TRUE


class _Gateway(Protocol):
    async def send(self, to: str, body: str, values: Mapping[str, Any]) -> str: ...


class SmsProcessor:
    """Sends the rendered template of the occurrence's type to the user's phone."""

    def __init__(self, name: str, settings: SmsSettings, ctx: ProcessorContext) -> None:
        self.name = name
        self._settings = settings
        self._ctx = ctx
        self._tz_field = settings.recipient.tz_field
        self._templates = {
            kind: Template(f"templates.{kind}", source, MESSAGE_FIELDS)
            for kind, source in settings.templates.items()
        }
        timeout_s = settings.request_timeout_ms / 1000
        self._gateway: _Gateway = (
            _Twilio(settings.twilio, ctx.http, timeout_s)
            if settings.twilio is not None
            else _Generic(_required(settings.generic), ctx.http, timeout_s)
        )
        self._bucket = TokenBucket(ctx.redis, ctx.names) if settings.rate_limit is not None else None

    async def __call__(self, occ: Occurrence) -> Mapping[str, str] | None:
        """Send one message; return ``{"message_id": ..., "to": <masked number>}``."""
        log = self._ctx.log.bind(processor=self.name, key=occ.key, occurrence=occ.occurrence)
        profile = await self._profile(occ)
        if self._opted_out(occ.payload, profile):
            log.info("reminder.skipped", reason="opted out")
            raise SkipOccurrence("opted out")
        to = self._recipient(occ.user_id, occ.payload, profile)
        zone = user_zone([occ.payload.get(self._tz_field), profile.get("tz")], self._settings.timezone)
        values = {**message_values(occ, zone), "idempotency_key": occ.idempotency_key}
        body = self._template(occ.type).render(values)
        await self._throttle()
        message_id = await self._gateway.send(to, body, values)
        masked = mask_phone(to)
        log.info("sms.sent", to=masked, message_id=message_id, chars=len(body))
        log.debug("sms.body", to=masked, body=body)
        return {"message_id": message_id, "to": masked}

    async def _profile(self, occ: Occurrence) -> dict[str, str]:
        """The lookup hash's phone, tz and opt-out values (empty without a lookup).

        The pipeline reads the hash once per occurrence and carries it (``occ.profile``);
        only without that is it read here.
        """
        lookup = self._settings.recipient.lookup
        if lookup is None:
            return {}
        key, fields = lookup.hash_key(occ.user_id), lookup.fields
        carried = None if occ.profile is None else occ.profile.get(key)
        if carried is not None:
            return {role: carried[name] for role, name in fields.items() if name in carried}
        try:
            found = await self._ctx.redis.hmget(key, list(fields.values()))
        except aioredis.RedisError as exc:
            raise RetryableError(f"reading {key} failed: {type(exc).__name__}") from exc
        return {role: _text(value) for role, value in zip(fields, found, strict=True) if value is not None}

    def _opted_out(self, payload: Mapping[str, Any], profile: Mapping[str, str]) -> bool:
        field = self._settings.opt_out_field
        return (field is not None and is_opted_out(payload.get(field))) or is_opted_out(
            profile.get("opt_out")
        )

    def _recipient(self, user_id: str, payload: Mapping[str, Any], profile: Mapping[str, str]) -> str:
        """The E.164 number from the payload, else the lookup hash; permanent error otherwise."""
        field = self._settings.recipient.phone_field
        value: object = payload.get(field)
        source = f"payload.{field}"
        missing = f"{source} is missing"
        lookup = self._settings.recipient.lookup
        if (value is None or value == "") and lookup is not None:
            key = lookup.hash_key(user_id)
            value, source = profile.get("phone"), f"{key} field {lookup.phone_field}"
            missing += f" and {key} has no {lookup.phone_field}"
        if value is None or value == "":
            raise PermanentError(f"no phone number ({missing})", code="missing_recipient")
        if not isinstance(value, str) or not E164.fullmatch(value):
            shown = mask_phone(value) if isinstance(value, str) else f"a {type(value).__name__}"
            raise PermanentError(f"{source} is not an E.164 phone number ({shown})", code="invalid_recipient")
        return value

    def _template(self, kind: str) -> Template:
        template = self._templates.get(kind) or self._templates.get("default")
        if template is None:
            raise PermanentError(f"no template for type {kind!r} and no default", code="no_template")
        return template

    async def _throttle(self) -> None:
        limit = self._settings.rate_limit
        if self._bucket is None or limit is None:
            return
        bucket = self._settings.bucket
        try:
            await self._bucket.take(bucket, limit.per_second, limit.burst, max_wait_ms=limit.max_wait_ms)
        except aioredis.RedisError as exc:
            raise RetryableError(f"rate limit unavailable: {type(exc).__name__}") from exc

    async def aclose(self) -> None:
        """Nothing of its own to release: the HTTP client and Redis belong to the daemon."""


class _Twilio:
    """``POST {base_url}/2010-04-01/Accounts/{sid}/Messages.json`` with basic auth."""

    def __init__(self, settings: TwilioSettings, http: HttpClient, timeout_s: float):
        self._url = f"{settings.base_url}/2010-04-01/Accounts/{settings.account_sid}/Messages.json"
        self._auth = basic_auth(settings.account_sid, settings.auth_token.get_secret_value())
        self._sender = (
            {"From": settings.from_number}
            if settings.from_number
            else {"MessagingServiceSid": _required(settings.messaging_service_sid)}
        )
        self._http, self._timeout_s, self._where = http, timeout_s, "twilio"

    async def send(self, to: str, body: str, values: Mapping[str, Any]) -> str:
        form = {"To": to, **self._sender, "Body": body}
        response = await self._http.request(
            "POST", self._url, where=self._where, data=form, headers=self._auth, timeout_s=self._timeout_s
        )
        data = _json(response)
        if response.is_success:
            sid = data.get("sid")
            return sid if isinstance(sid, str) and sid else UNKNOWN_ID
        code = data.get("code")
        message = data.get("message")
        detail = message if isinstance(message, str) else excerpt(response.text, ())
        _fail(self._where, response, None if code is None else str(code), detail)


class _Generic:
    """Any HTTP gateway: everything comes from the ``generic`` templates."""

    def __init__(self, settings: GenericSettings, http: HttpClient, timeout_s: float):
        self._settings = settings
        self._url = Template("generic.url", settings.url, GATEWAY_FIELDS)
        self._headers = {
            k: Template(f"generic.headers.{k}", v, GATEWAY_FIELDS) for k, v in settings.headers.items()
        }
        self._body = {k: Template(f"generic.body.{k}", v, GATEWAY_FIELDS) for k, v in settings.body.items()}
        self._token = settings.token.get_secret_value() if settings.token else None
        password = settings.password.get_secret_value() if settings.password else None
        self._auth = basic_auth(settings.username, password) if settings.username and password else {}
        self._secrets = tuple(s for s in (self._token, password) if s)
        self._http, self._timeout_s, self._where = http, timeout_s, "gateway"
        self._regex = re.compile(settings.message_id_regex) if settings.message_id_regex else None

    async def send(self, to: str, body: str, values: Mapping[str, Any]) -> str:
        full = {**values, "to": to, "from": self._settings.from_number, "body": body, "token": self._token}
        url = self._url.render(full, escape=lambda text: quote(text, safe=""))
        headers = {name: template.render(full) for name, template in self._headers.items()}
        fields = {name: template.render(full) for name, template in self._body.items()}
        content: dict[str, Any] = {}
        if self._settings.method != "GET":
            content = {"json": fields} if self._settings.encoding == "json" else {"data": fields}
        response = await self._http.request(
            self._settings.method,
            url,
            where=self._where,
            headers={**headers, **self._auth},
            timeout_s=self._timeout_s,
            **content,
        )
        if response.status in self._settings.success_status:
            return self._message_id(response)
        _fail(self._where, response, None, excerpt(response.text, self._secrets))

    def _message_id(self, response: HttpAnswer) -> str:
        if self._regex is not None:
            match = self._regex.search(response.text)
            return match.group(1) if match and match.group(1) else UNKNOWN_ID
        if self._settings.message_id_path is None:
            return UNKNOWN_ID
        current: Any = _json(response)
        for part in self._settings.message_id_path.split("."):
            if isinstance(current, list) and part.isdigit() and int(part) < len(current):
                current = current[int(part)]
            elif isinstance(current, dict):
                current = current.get(part)
            else:
                return UNKNOWN_ID
        return str(current) if isinstance(current, str | int) and str(current) else UNKNOWN_ID


def _fail(where: str, response: HttpAnswer, code: str | None, detail: str) -> NoReturn:
    """Raise the error a non-success answer means; the message names the provider's code."""
    text = (
        f"{where}: HTTP {response.status}"
        + (f", code {code}" if code else "")
        + (f": {mask_text(detail)}" if detail else "")
    )
    refuse(response, text, code or f"http_{response.status}")


def _json(response: HttpAnswer) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _required(value: _T | None) -> _T:
    assert value is not None
    return value
