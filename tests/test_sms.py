"""The SMS processor against a real loopback Twilio server and a real Redis."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
import structlog
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from structlog.testing import capture_logs

from reminderd.config import load_config_text
from reminderd.config.model import describe
from reminderd.config.sms import SmsSettings
from reminderd.core.pii import mask_phone, mask_pii, mask_text
from reminderd.errors import ConfigError, PermanentError, RetryableError, SkipOccurrence
from reminderd.models import Occurrence
from reminderd.processors.base import HttpClient, Processor, ProcessorContext
from reminderd.processors.sms import SmsProcessor, is_opted_out
from reminderd.storage.names import Names
from tests.http_receiver import HttpReceiver, Reply
from tests.redis_server import free_port
from tests.twilio_server import AUTH_TOKEN, TwilioReply, TwilioServer

PHONE = "+4915112345678"
FROM = "+14155550100"
DUE_MS = 1_718_000_000_000  # 2024-06-10 06:13:20 UTC = 08:13 in Berlin


def make_occ(**overrides: Any) -> Occurrence:
    """A ``send_message-42-daily`` occurrence; keyword arguments override fields."""
    values: dict[str, Any] = {
        "key": "send_message-42-daily",
        "rule": "send_message",
        "user_id": "42",
        "type": "daily",
        "payload": {"phone": PHONE, "name": "Ada"},
        "due_at_ms": DUE_MS,
        "fired_at_ms": DUE_MS + 20,
        "occurrence": 3,
        "attempt": 1,
    }
    values.update(overrides)
    return Occurrence(**values)


@pytest.fixture
def twilio() -> Iterator[TwilioServer]:
    """A fake Twilio Messages API on loopback."""
    with TwilioServer() as server:
        yield server


@pytest.fixture
async def ctx(aredis: aioredis.Redis) -> AsyncIterator[ProcessorContext]:
    """The daemon's shared resources, real Redis and a real HTTP client."""
    async with HttpClient(100) as http:
        yield ProcessorContext(redis=aredis, http=http, names=Names("t"), log=structlog.get_logger())


def sms_settings(base_url: str, **overrides: Any) -> SmsSettings:
    """Valid Twilio settings pointing at ``base_url``; keyword arguments override keys."""
    data: dict[str, Any] = {
        "type": "sms",
        "twilio": {"base_url": base_url, "account_sid": TwilioServer().account_sid, "auth_token": AUTH_TOKEN,
                   "from": FROM},
        "templates": {"default": "Hi {payload.name}, your {type} reminder for {due_local:%H:%M}"},
        "timezone": "Europe/Berlin",
        "request_timeout": "1s",
    }  # fmt: skip
    data.update(overrides)
    return SmsSettings.model_validate(data)


def make_proc(ctx: ProcessorContext, base_url: str, **overrides: Any) -> SmsProcessor:
    """An SmsProcessor named ``sms``."""
    return SmsProcessor("sms", sms_settings(base_url, **overrides), ctx)


async def test_sends_the_rendered_body_to_the_payload_number_with_auth(
    twilio: TwilioServer, ctx: ProcessorContext
) -> None:
    """A due reminder becomes one authenticated form POST with To, From and the rendered Body."""
    proc = make_proc(ctx, twilio.base_url)
    assert isinstance(proc, Processor)
    result = await proc(make_occ())
    [req] = twilio.requests
    assert req.authorized
    assert req.path == f"/2010-04-01/Accounts/{twilio.account_sid}/Messages.json"
    assert req.form == {"To": PHONE, "From": FROM, "Body": "Hi Ada, your daily reminder for 08:13"}
    assert result == {"message_id": req.sid, "to": "+4915*******78"}
    await proc.aclose()


async def test_messaging_service_sid_replaces_from(twilio: TwilioServer, ctx: ProcessorContext) -> None:
    """With messaging_service_sid the form carries MessagingServiceSid instead of From."""
    tw = {"base_url": twilio.base_url, "account_sid": twilio.account_sid, "auth_token": AUTH_TOKEN,
          "messaging_service_sid": "MG123"}  # fmt: skip
    await make_proc(ctx, twilio.base_url, twilio=tw)(make_occ())
    assert twilio.requests[0].form["MessagingServiceSid"] == "MG123"
    assert "From" not in twilio.requests[0].form


async def test_template_per_type_with_default_fallback(twilio: TwilioServer, ctx: ProcessorContext) -> None:
    """The type's own template wins; other types use ``default``; payload and user fields resolve."""
    templates = {"default": "Reminder {type} for user {user_id}", "welcome": "Welcome {payload.name}! ({tz})"}
    proc = make_proc(ctx, twilio.base_url, templates=templates)
    await proc(make_occ(type="welcome", payload={"phone": PHONE, "name": "Ada", "tz": "America/New_York"}))
    await proc(make_occ(type="weekly"))
    assert [r.body for r in twilio.requests] == [
        "Welcome Ada! (America/New_York)",
        "Reminder weekly for user 42",
    ]


async def test_no_template_and_no_default_is_permanent(twilio: TwilioServer, ctx: ProcessorContext) -> None:
    """A type without a template, when no default exists, is a permanent failure."""
    proc = make_proc(ctx, twilio.base_url, templates={"welcome": "Hi"})
    with pytest.raises(PermanentError) as info:
        await proc(make_occ(type="daily"))
    assert str(info.value) == "no template for type 'daily' and no default"
    assert info.value.code == "no_template"
    assert twilio.requests == []


async def test_missing_template_field_is_permanent_and_names_it(
    twilio: TwilioServer, ctx: ProcessorContext
) -> None:
    """A template field absent from the payload fails permanently, naming it, and sends nothing."""
    proc = make_proc(ctx, twilio.base_url, templates={"default": "Hi {payload.name}, see {payload.link}"})
    with pytest.raises(PermanentError) as info:
        await proc(make_occ())
    assert str(info.value) == "templates.default: missing field payload.link"
    assert info.value.code == "template_field_missing"
    assert twilio.requests == []


async def test_template_field_that_does_not_fit_its_format_is_permanent(
    twilio: TwilioServer, ctx: ProcessorContext
) -> None:
    """A payload value that cannot take the placeholder's format spec fails permanently."""
    proc = make_proc(ctx, twilio.base_url, templates={"default": "Pay {payload.amount:.2f}"})
    with pytest.raises(PermanentError) as info:
        await proc(make_occ(payload={"phone": PHONE, "amount": "ten"}))
    assert str(info.value) == "templates.default: field payload.amount does not fit format '.2f'"
    await proc(make_occ(payload={"phone": PHONE, "amount": 10}))
    assert twilio.requests[0].body == "Pay 10.00"


async def test_lookup_hash_supplies_phone_and_zone(
    twilio: TwilioServer, ctx: ProcessorContext, aredis: aioredis.Redis
) -> None:
    """Without a payload number the lookup hash gives the number and the zone for the due time."""
    await aredis.hset("user:42", mapping={"phone": "+15005550006", "tz": "America/New_York"})
    proc = make_proc(ctx, twilio.base_url, recipient={"lookup": {"key": "user:{user_id}"}},
                     templates={"default": "{due_local:%H:%M} {tz}"})  # fmt: skip
    await proc(make_occ(payload={}))
    await proc(make_occ(payload={"phone": PHONE, "tz": "Asia/Tokyo"}))
    assert [(r.to, r.body) for r in twilio.requests] == [
        ("+15005550006", "02:13 America/New_York"),
        (PHONE, "15:13 Asia/Tokyo"),
    ]


@pytest.mark.parametrize(
    ("payload", "message", "code"),
    [
        ({}, "no phone number (payload.phone is missing)", "missing_recipient"),
        ({"phone": ""}, "no phone number (payload.phone is missing)", "missing_recipient"),
        ({"phone": "015112345678"}, "payload.phone is not an E.164 phone number (0151******78)",
         "invalid_recipient"),
        ({"phone": "+49 151 1234"}, "payload.phone is not an E.164 phone number (+49 *** **34)",
         "invalid_recipient"),
        ({"phone": 4915112345678}, "payload.phone is not an E.164 phone number (a int)",
         "invalid_recipient"),
    ],
)  # fmt: skip
async def test_missing_or_invalid_number_is_permanent(
    twilio: TwilioServer, ctx: ProcessorContext, payload: dict[str, Any], message: str, code: str
) -> None:
    """A missing or non-E.164 number fails permanently with a masked, clear reason."""
    with pytest.raises(PermanentError) as info:
        await make_proc(ctx, twilio.base_url)(make_occ(payload=payload))
    assert (str(info.value), info.value.code) == (message, code)
    assert twilio.requests == []


async def test_missing_number_in_lookup_names_the_hash(twilio: TwilioServer, ctx: ProcessorContext) -> None:
    """With a lookup configured and no number anywhere, the error names the hash key."""
    proc = make_proc(ctx, twilio.base_url, recipient={"lookup": {"key": "profile:{user_id}"}})
    with pytest.raises(PermanentError) as info:
        await proc(make_occ(payload={}))
    assert str(info.value) == "no phone number (payload.phone is missing and profile:42 has no phone)"


@pytest.mark.parametrize(
    ("payload", "profile"),
    [({"phone": PHONE, "sms_opt_out": True}, None), ({"phone": PHONE}, {"sms_opt_out": "1"})],
)
async def test_opted_out_user_is_skipped_and_logged(
    twilio: TwilioServer,
    ctx: ProcessorContext,
    aredis: aioredis.Redis,
    payload: dict[str, Any],
    profile: dict[str, str] | None,
) -> None:
    """An opt-out flag in the payload or the lookup hash skips the send and logs reminder.skipped."""
    if profile:
        for field, value in profile.items():
            await aredis.hset("user:42", field, value)
    proc = make_proc(ctx, twilio.base_url, recipient={"lookup": {}})
    with capture_logs() as logs, pytest.raises(SkipOccurrence, match=r"^opted out$"):
        await proc(make_occ(payload=payload))
    assert [e for e in logs if e["event"] == "reminder.skipped"] == [
        {"event": "reminder.skipped", "reason": "opted out", "processor": "sms",
         "key": "send_message-42-daily", "occurrence": 3, "log_level": "info"}
    ]  # fmt: skip
    assert twilio.requests == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), (1, True), ("yes", True), (" TRUE ", True), ("0", False), ("", False), (None, False),
     (False, False), ("no", False)],
)  # fmt: skip
def test_opt_out_flag_values(value: object, expected: bool) -> None:
    """Opt-out flags accept JSON booleans and the usual true-ish strings of a hash."""
    assert is_opted_out(value) is expected


async def test_429_is_retryable_honouring_retry_after(twilio: TwilioServer, ctx: ProcessorContext) -> None:
    """429 from Twilio is retryable with the server's Retry-After."""
    twilio.script(TwilioReply.too_many(retry_after="7"))
    with pytest.raises(RetryableError) as info:
        await make_proc(ctx, twilio.base_url)(make_occ())
    assert info.value.retry_after_s == 7.0
    assert str(info.value) == "twilio: HTTP 429, code 20429: Too Many Requests"


async def test_5xx_is_retryable_and_then_succeeds(twilio: TwilioServer, ctx: ProcessorContext) -> None:
    """500 and 503 are retryable (no Retry-After); the next attempt succeeds."""
    twilio.script(TwilioReply.server_error(500), TwilioReply.server_error(503))
    proc = make_proc(ctx, twilio.base_url)
    for status in (500, 503):
        with pytest.raises(RetryableError) as info:
            await proc(make_occ())
        assert info.value.retry_after_s is None
        assert f"HTTP {status}" in str(info.value)
    result = await proc(make_occ())
    assert result is not None
    assert result["message_id"] == twilio.sent[0].sid
    assert [r.status for r in twilio.requests] == [500, 503, 201]


async def test_timeout_is_retryable(twilio: TwilioServer, ctx: ProcessorContext) -> None:
    """A provider slower than request_timeout gives a retryable error."""
    twilio.script(TwilioReply(delay_s=1.0))
    with pytest.raises(RetryableError) as info:
        await make_proc(ctx, twilio.base_url, request_timeout="200ms")(make_occ())
    assert str(info.value) == "twilio: timed out after 0.2s"


async def test_unreachable_provider_is_retryable(ctx: ProcessorContext) -> None:
    """A refused connection is retryable and the error does not quote the URL."""
    with pytest.raises(RetryableError) as info:
        await make_proc(ctx, f"http://127.0.0.1:{free_port()}")(make_occ())
    assert str(info.value) == "twilio: request failed (ClientConnectorError)"


async def test_400_is_permanent_with_the_provider_code(twilio: TwilioServer, ctx: ProcessorContext) -> None:
    """Other 4xx are permanent and carry Twilio's error code and message."""
    twilio.script(TwilioReply(400, 21211, f"The 'To' number {PHONE} is not a valid phone number."))
    with pytest.raises(PermanentError) as info:
        await make_proc(ctx, twilio.base_url)(make_occ())
    assert info.value.code == "21211"
    assert str(info.value) == (
        "twilio: HTTP 400, code 21211: The 'To' number +4915*******78 is not a valid phone number."
    )


async def test_wrong_credentials_are_permanent_and_not_echoed(
    twilio: TwilioServer, ctx: ProcessorContext
) -> None:
    """A rejected auth token is a permanent 401 whose message holds no credential."""
    tw = {"base_url": twilio.base_url, "account_sid": twilio.account_sid, "auth_token": "wrong-token-xyz",
          "from": FROM}  # fmt: skip
    with pytest.raises(PermanentError) as info:
        await make_proc(ctx, twilio.base_url, twilio=tw)(make_occ())
    assert (info.value.code, str(info.value)) == (
        "20003",
        "twilio: HTTP 401, code 20003: Authenticate",
    )
    assert not twilio.requests[0].authorized


async def test_rate_limit_hands_back_work_beyond_max_wait(
    twilio: TwilioServer, ctx: ProcessorContext
) -> None:
    """With the bucket empty and the wait above max_wait, the send is retryable and never reaches Twilio."""
    proc = make_proc(ctx, twilio.base_url, rate_limit={"per_second": 0.5, "burst": 1, "max_wait": "100ms"})
    await proc(make_occ())
    with pytest.raises(RetryableError) as info:
        await proc(make_occ())
    assert info.value.retry_after_s is not None
    assert 1.5 < info.value.retry_after_s <= 2.0
    assert len(twilio.requests) == 1
    assert await ctx.redis.exists(ctx.names.rate(twilio.account_sid)) == 1


async def test_logs_hold_no_phone_number_token_or_body(twilio: TwilioServer, ctx: ProcessorContext) -> None:
    """Neither the number, the auth token nor the body appears in any log line or error at info level."""
    twilio.script(TwilioReply(400, 21211, f"The 'To' number {PHONE} is not valid."))
    proc = make_proc(ctx, twilio.base_url)
    with capture_logs() as logs:
        with pytest.raises(PermanentError) as info:
            await proc(make_occ())
        await proc(make_occ())
    text = repr(logs) + str(info.value)
    sent = [e for e in logs if e["event"] == "sms.sent"]
    expected = {"event": "sms.sent", "to": "+4915*******78", "message_id": twilio.sent[0].sid, "chars": 37}
    context = {"processor": "sms", "key": "send_message-42-daily", "occurrence": 3, "log_level": "info"}
    assert sent == [expected | context]
    for secret in (PHONE, AUTH_TOKEN, "15112345678"):
        assert secret not in text
    info_text = repr([e for e in logs if e["log_level"] != "debug"])
    assert "Hi Ada" not in info_text


def test_mask_phone_keeps_prefix_and_last_two_digits() -> None:
    """Numbers keep country/carrier prefix and two last digits; short ones show less."""
    assert mask_phone("+491512345689") == "+4915******89"
    assert mask_phone("+15550001") == "+15****01"
    assert mask_phone("123") == "***"
    assert mask_phone("") == ""


def test_mask_pii_masks_numbers_in_any_string_field() -> None:
    """The structlog processor masks E.164-looking numbers at any depth and leaves integers alone."""
    event = {
        "event": f"sent to {PHONE}",
        "error": f"HTTP 400: bad number {PHONE}.",
        "nested": {"list": [PHONE, "+1 555"], "due_at_ms": DUE_MS},
        "key": "send_message-42-daily:3",
    }
    assert mask_pii(None, "info", event) == {
        "event": "sent to +4915*******78",
        "error": "HTTP 400: bad number +4915*******78.",
        "nested": {"list": ["+4915*******78", "+1 555"], "due_at_ms": DUE_MS},
        "key": "send_message-42-daily:3",
    }
    assert mask_text("id a+4915112345678 stays") == "id a+4915112345678 stays"


async def test_generic_gateway_renders_method_url_headers_and_body(ctx: ProcessorContext) -> None:
    """The generic provider sends the rendered JSON body and headers and reads the id by JSON path."""
    with HttpReceiver(Reply(200, body='{"messages": [{"id": "GW-77"}]}')) as gateway:
        generic = {
            "url": gateway.url("/v1/send?user={user_id}"),
            "headers": {"Authorization": "Bearer {token}", "X-Idempotency-Key": "{idempotency_key}"},
            "body": {"to": "{to}", "from": "{from}", "text": "{body}"},
            "token": "gw-secret-1",
            "from": FROM,
            "message_id_path": "messages.0.id",
        }
        result = await make_proc(ctx, "http://unused", twilio=None, generic=generic)(make_occ())
        [req] = gateway.requests
    assert result == {"message_id": "GW-77", "to": "+4915*******78"}
    assert (req.method, req.path) == ("POST", "/v1/send?user=42")
    assert req.headers["authorization"] == "Bearer gw-secret-1"
    assert req.headers["x-idempotency-key"] == make_occ().idempotency_key
    assert req.json() == {"to": PHONE, "from": FROM, "text": "Hi Ada, your daily reminder for 08:13"}


async def test_generic_gateway_get_escapes_url_values_and_uses_regex(ctx: ProcessorContext) -> None:
    """Values put into a URL are percent-encoded, so ``+`` survives; the id comes from a regex."""
    with HttpReceiver(Reply(200, body="OK id=abc123")) as gateway:
        generic = {
            "method": "GET",
            "url": gateway.url("/send?to={to}&text={body}"),
            "message_id_regex": r"id=(\w+)",
        }
        result = await make_proc(
            ctx, "http://unused", twilio=None, generic=generic, templates={"default": "a&b"}
        )(make_occ())
        [req] = gateway.requests
    assert req.path == "/send?to=%2B4915112345678&text=a%26b"
    assert result is not None
    assert result["message_id"] == "abc123"


@pytest.mark.parametrize(
    ("reply", "error", "message", "code"),
    [
        (Reply(400, body="bad number +4915112345678 key gw-secret-1"), PermanentError,
         "gateway: HTTP 400: bad number +4915*******78 key ***", "http_400"),
        (Reply(503, retry_after="3"), RetryableError, "gateway: HTTP 503", None),
    ],
)  # fmt: skip
async def test_generic_gateway_failures(
    ctx: ProcessorContext, reply: Reply, error: type[Exception], message: str, code: str | None
) -> None:
    """Generic 4xx are permanent, coded ``http_<status>``, secrets and numbers masked; 5xx retryable."""
    with HttpReceiver(reply) as gateway:
        generic = {
            "url": gateway.url("/send"),
            "body": {"to": "{to}", "k": "{token}"},
            "token": "gw-secret-1",
        }
        with pytest.raises(error) as info:
            await make_proc(ctx, "http://unused", twilio=None, generic=generic)(make_occ())
    assert str(info.value) == message
    if code is not None:
        assert isinstance(info.value, PermanentError)
        assert info.value.code == code
    else:
        assert isinstance(info.value, RetryableError)
        assert info.value.retry_after_s == 3.0


# --- settings, validated the way the daemon loads them ----------------------------------------

BASE = """
processors:
  sms:
    type: sms
{body}
rules:
  send_message: {{processors: [sms]}}
"""
TWILIO = """\
twilio: {account_sid: AC1, auth_token: tok, from: "+14155550100"}
templates: {default: "Hi {payload.name}"}
"""


def load(body: str) -> Any:
    """Validate a config whose ``processors.sms`` section is ``body``."""
    return load_config_text(BASE.format(body=textwrap.indent(body, " " * 4)))


def test_valid_sms_config_loads_and_hides_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """A full SMS section loads; the token comes from the environment and is masked in dumps."""
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "env-token-123")
    settings = load(
        "twilio: {account_sid: AC1, auth_token: '${TWILIO_AUTH_TOKEN}', from: '+14155550100'}\n"
        "recipient: {lookup: {key: 'user:{user_id}'}}\n"
        "templates: {default: 'Hi', welcome: 'Welcome {payload.name} at {due_local:%H:%M}'}\n"
        "timezone: Europe/Berlin\n"
        "rate_limit: {per_second: 10, burst: 10}\n"
        "timeout: 10s\n"
    )
    sms = settings.processors["sms"]
    assert isinstance(sms, SmsSettings)
    assert sms.twilio is not None
    assert sms.twilio.auth_token.get_secret_value() == "env-token-123"
    assert sms.bucket == "AC1"
    assert "env-token-123" not in repr(sms)
    assert "env-token-123" not in repr(describe(settings))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("twilio: {account_sid: AC1, auth_token: tok, from: '015112345678'}\ntemplates: {default: x}",
         "processors.sms.twilio.from: '0151******78' is not an E.164 number (+ and 7 to 15 digits, "
         "e.g. +14155550100)"),
        ("twilio: {auth_token: tok, from: '+14155550100'}\ntemplates: {default: x}",
         "processors.sms.twilio.account_sid: Field required"),
        ("twilio: {account_sid: AC1, auth_token: tok}\ntemplates: {default: x}",
         "processors.sms.twilio: twilio: give exactly one of 'from' or 'messaging_service_sid'"),
        (TWILIO.replace("Hi {payload.name}", "Hi {nme}"),
         "processors.sms.templates.default: unknown placeholder {nme} (known: user_id, type, key, rule, "
         "occurrence, tz, due_local, due_utc, payload.<field>)"),
        (TWILIO.replace("Hi {payload.name}", "Hi {payload}"),
         "processors.sms.templates.default: placeholder {payload} needs a field name, e.g. {payload.name}"),
        (TWILIO.replace("Hi {payload.name}", "Hi {user_id!r}"),
         "processors.sms.templates.default: placeholder {user_id!r}: conversions are not supported"),
        (TWILIO.replace("Hi {payload.name}", "Hi {payload.name"),
         "processors.sms.templates.default: invalid template: expected '}' before end of string "
         "(write {{ and }} for literal braces)"),
        (TWILIO.replace("Hi {payload.name}", "Hi {user_id:.2f}"),
         "processors.sms.templates.default: placeholder {user_id:.2f}: invalid format spec"),
        (TWILIO.replace("Hi {payload.name}", "Hi {to}"),
         "processors.sms.templates.default: unknown placeholder {to} (known: user_id, type, key, rule, "
         "occurrence, tz, due_local, due_utc, payload.<field>)"),
        ("templates: {default: x}",
         "processors.sms: give exactly one provider section: 'twilio' or 'generic'"),
        (TWILIO + "generic: {url: 'http://x/send'}",
         "processors.sms: give exactly one provider section: 'twilio' or 'generic'"),
        (TWILIO.replace("templates: {default: \"Hi {payload.name}\"}", "templates: {}"),
         "processors.sms.templates: Dictionary should have at least 1 item after validation, not 0"),
        (TWILIO + "timezone: Mars/Base", "processors.sms.timezone: unknown time zone 'Mars/Base' "
         "(expected an IANA name such as Europe/Berlin)"),
        (TWILIO + "recipient: {lookup: {key: 'user:42'}}",
         "processors.sms.recipient.lookup: lookup.key must contain {user_id} and no other placeholder"),
        (TWILIO + "rate_limit: {per_second: 0}",
         "processors.sms.rate_limit.per_second: Input should be greater than 0"),
        (TWILIO + "timeout: 5s", "processors.sms: timeout must be longer than request_timeout plus "
         "rate_limit.max_wait (5000 ms + 0 ms)"),
        (TWILIO + "sender: x",
         "processors.sms.sender: unknown key (check the spelling; see docs/config-reference.md)"),
        ("generic: {url: 'http://x/send', body: {t: '{token}'}}\ntemplates: {default: x}",
         "processors.sms.generic: generic: templates use {token} but 'token' is not set"),
        ("generic: {url: 'http://x/send?to={to}', method: GET, body: {t: x}}\ntemplates: {default: x}",
         "processors.sms.generic: generic: 'body' is not allowed with method GET (put the fields in 'url')"),
        ("generic: {url: 'ftp://x/{to}'}\ntemplates: {default: x}",
         "processors.sms.generic.url: expected an http:// or https:// URL, got 'ftp://x/{to}'"),
        ("generic: {url: 'http://x/', message_id_regex: 'id'}\ntemplates: {default: x}",
         "processors.sms.generic: generic: message_id_regex must have exactly one group (the message id)"),
        (TWILIO.replace("Hi {payload.name}", "Hi {due_local:{tz}}"),
         "processors.sms.templates.default: placeholder {due_local}: nested placeholders are not supported"),
        ("generic: {url: 'http://x/', username: u}\ntemplates: {default: x}",
         "processors.sms.generic: generic: give both 'username' and 'password' for basic auth, or neither"),
        ("generic: {url: 'http://x/', message_id_path: a, message_id_regex: '(a)'}\ntemplates: {default: x}",
         "processors.sms.generic: generic: give 'message_id_path' or 'message_id_regex', not both"),
        ("generic: {url: 'http://x/', message_id_regex: '(a'}\ntemplates: {default: x}",
         "processors.sms.generic: generic: message_id_regex: invalid regular expression: missing ), "
         "unterminated subpattern at position 0"),
        ("generic: {url: 'http://x/', headers: {A: '{secret}'}}\ntemplates: {default: x}",
         "processors.sms.generic.headers.A: unknown placeholder {secret} (known: user_id, type, key, rule, "
         "occurrence, tz, due_local, due_utc, to, from, body, token, idempotency_key, payload.<field>)"),
    ],
)  # fmt: skip
def test_bad_sms_settings_give_exact_messages(body: str, message: str) -> None:
    """Each bad SMS setting is a ConfigError naming its path and what is wrong."""
    with pytest.raises(ConfigError) as info:
        load(body)
    assert str(info.value) == f"<string>: {message}"


async def test_placeholders_are_looked_up_never_evaluated(
    twilio: TwilioServer, ctx: ProcessorContext
) -> None:
    """``{payload.__class__}`` is a payload key like any other, never an attribute of an object."""
    proc = make_proc(ctx, twilio.base_url, templates={"default": "{payload.__class__}"})
    with pytest.raises(PermanentError) as info:
        await proc(make_occ())
    assert str(info.value) == "templates.default: missing field payload.__class__"
    with pytest.raises(ValueError, match=r"invalid placeholder \{user_id\[0\]\}"):
        sms_settings(twilio.base_url, templates={"default": "{user_id[0]}"})


async def test_generic_gateway_form_body_with_basic_auth(ctx: ProcessorContext) -> None:
    """Form encoding and basic auth work; without an id setting the message id is ``unknown``."""
    with HttpReceiver(Reply(202)) as gateway:
        generic = {"url": gateway.url("/sms"), "encoding": "form", "body": {"dst": "{to}", "msg": "{body}"},
                   "username": "api", "password": "pw-9"}  # fmt: skip
        settings = sms_settings("http://unused", twilio=None, generic=generic)
        result = await SmsProcessor("sms", settings, ctx)(make_occ())
        [req] = gateway.requests
        assert settings.bucket == f"127.0.0.1:{gateway.port}"
    assert result == {"message_id": "unknown", "to": "+4915*******78"}
    assert req.headers["authorization"] == "Basic YXBpOnB3LTk="
    assert req.body == b"dst=%2B4915112345678&msg=Hi+Ada%2C+your+daily+reminder+for+08%3A13"


async def test_redis_outage_during_lookup_or_rate_limit_is_retryable(twilio: TwilioServer) -> None:
    """When Redis is down, reading the lookup hash or the bucket is a retryable failure."""
    down = aioredis.Redis(port=free_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    async with HttpClient(100) as http:
        ctx = ProcessorContext(redis=down, http=http, names=Names("t"), log=structlog.get_logger())
        lookup = make_proc(ctx, twilio.base_url, recipient={"lookup": {}})
        with pytest.raises(RetryableError, match=r"^reading user:42 failed: ConnectionError$"):
            await lookup(make_occ())
        limited = make_proc(ctx, twilio.base_url, rate_limit={"per_second": 1})
        with pytest.raises(RetryableError, match=r"^rate limit unavailable: ConnectionError$"):
            await limited(make_occ())
    await down.aclose()
    assert twilio.requests == []


async def test_a_profile_carried_on_the_occurrence_replaces_the_hash_read(twilio: TwilioServer) -> None:
    """With the lookup hash already read by the pipeline, the processor sends without touching Redis."""
    down = aioredis.Redis(port=free_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    async with HttpClient(100) as http:
        ctx = ProcessorContext(redis=down, http=http, names=Names("t"), log=structlog.get_logger())
        proc = make_proc(ctx, twilio.base_url, recipient={"lookup": {}})
        carried = make_occ(payload={"name": "Ada"}, profile={"user:42": {"phone": PHONE, "tz": "UTC"}})
        result = await proc(carried)
    await down.aclose()
    assert result["to"] == "+4915*******78"
    assert twilio.requests[0].form["Body"] == "Hi Ada, your daily reminder for 06:13"


async def test_non_scalar_template_field_is_permanent(twilio: TwilioServer, ctx: ProcessorContext) -> None:
    """A payload object or list in a placeholder is refused rather than rendered as Python text."""
    proc = make_proc(ctx, twilio.base_url, templates={"default": "Hi {payload.name}"})
    with pytest.raises(PermanentError) as info:
        await proc(make_occ(payload={"phone": PHONE, "name": {"first": "Ada"}}))
    assert (str(info.value), info.value.code) == (
        "templates.default: field payload.name is not a single value",
        "template_field_invalid",
    )


def test_mask_pii_in_a_logging_chain_masks_exception_texts() -> None:
    """Placed after format_exc_info, the processor masks numbers inside rendered tracebacks too."""
    log = structlog.wrap_logger(
        structlog.ReturnLogger(),
        processors=[structlog.processors.format_exc_info, mask_pii, structlog.processors.JSONRenderer()],
    )
    try:
        raise ValueError(f"bad recipient {PHONE}")
    except ValueError:
        line = log.error("sms.failed", to=PHONE, exc_info=True)
    assert PHONE not in line
    assert "bad recipient +4915*******78" in line
