"""Processor registry, built-ins (log, webhook, stream) and plugin loading, against real servers."""

from __future__ import annotations

import email.utils
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import structlog
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from structlog.testing import capture_logs

from reminderd import __version__
from reminderd.config.processors import (
    LogSettings,
    PluginSettings,
    ProcessorSettings,
    StreamSettings,
    WebhookSettings,
)
from reminderd.config.sms import SmsSettings
from reminderd.errors import ConfigError, PermanentError, RetryableError
from reminderd.models import Occurrence
from reminderd.processors.base import HttpClient, Processor, ProcessorContext
from reminderd.processors.http import parse_retry_after
from reminderd.processors.log import LogProcessor
from reminderd.processors.plugins import load_plugin
from reminderd.processors.registry import build_processor, build_processors, timeout_ms_for
from reminderd.processors.stream import StreamProcessor
from reminderd.processors.webhook import WebhookProcessor
from reminderd.storage.names import Names
from tests.http_receiver import HttpReceiver, Reply
from tests.plugin_example import EchoProcessor
from tests.redis_server import free_port
from tests.serving import self_signed_cert

SECRET = "Bearer s3cret-token-value"


def make_occ(**overrides: Any) -> Occurrence:
    """An occurrence with plausible values; keyword arguments override fields."""
    values: dict[str, Any] = {
        "key": "send_message-42-daily",
        "rule": "send_message",
        "user_id": "42",
        "type": "daily",
        "payload": {"text": "drink water", "phone": "+15550001"},
        "due_at_ms": 1_700_000_000_000,
        "fired_at_ms": 1_700_000_000_025,
        "occurrence": 3,
        "attempt": 1,
    }
    values.update(overrides)
    return Occurrence(**values)


@pytest.fixture
async def ctx(aredis: aioredis.Redis) -> AsyncIterator[ProcessorContext]:
    """A context like the daemon's: storage Redis, one shared HTTP client, a structlog logger."""
    async with HttpClient(100) as http:
        yield ProcessorContext(redis=aredis, http=http, names=Names("test"), log=structlog.get_logger())


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    """A loopback HTTP server answering 200 unless scripted otherwise."""
    with HttpReceiver() as server:
        yield server


def webhook(receiver: HttpReceiver, path: str = "/hook", **extra: Any) -> WebhookSettings:
    """Webhook settings as they come out of YAML, pointed at ``receiver``."""
    return WebhookSettings.model_validate({"type": "webhook", "url": receiver.url(path), **extra})


# --- registry ---------------------------------------------------------------------------


async def test_registry_builds_each_builtin_kind(ctx: ProcessorContext, receiver: HttpReceiver) -> None:
    """Each settings type yields its processor class, keyed by the configured name."""
    settings: dict[str, ProcessorSettings] = {
        "audit": LogSettings(),
        "hook": webhook(receiver),
        "events": StreamSettings(type="stream", stream="events"),
        "echo": PluginSettings(type="plugin", path="tests.plugin_example:EchoProcessor"),
    }
    built = build_processors(settings, ctx)
    assert {name: type(proc) for name, proc in built.items()} == {
        "audit": LogProcessor,
        "hook": WebhookProcessor,
        "events": StreamProcessor,
        "echo": EchoProcessor,
    }
    assert all(isinstance(proc, Processor) for proc in built.values())
    for proc in built.values():
        await proc.aclose()


async def test_registry_builds_the_sms_processor(ctx: ProcessorContext) -> None:
    """SMS settings yield the SmsProcessor, imported only when an SMS processor is configured."""
    sms = pytest.importorskip("reminderd.processors.sms")
    settings = SmsSettings.model_validate(
        {
            "type": "sms",
            "twilio": {"account_sid": "AC123", "auth_token": "t0ken", "from": "+15550000000"},
            "templates": {"daily": "Hello"},
        }
    )
    proc = build_processor("sms", settings, ctx)
    assert isinstance(proc, sms.SmsProcessor)
    await proc.aclose()


async def test_registry_reports_a_bad_plugin_as_config_error(ctx: ProcessorContext) -> None:
    """A plugin that fails to load makes the whole build fail with its config path."""
    settings = {"x": PluginSettings(type="plugin", path="tests.plugin_example:Nope")}
    with pytest.raises(ConfigError) as info:
        build_processor("x", settings["x"], ctx)
    assert str(info.value) == "processors.x: module 'tests.plugin_example' has no attribute 'Nope'"


def test_timeout_ms_for_prefers_the_processor_timeout() -> None:
    """A processor's own ``timeout`` wins over the daemon default, which applies otherwise."""
    assert timeout_ms_for(LogSettings.model_validate({"timeout": "2s"}), 10_000) == 2000
    assert timeout_ms_for(LogSettings(), 10_000) == 10_000


# --- log ----------------------------------------------------------------------------------


@pytest.mark.parametrize("level", ["info", "warning"])
async def test_log_adds_no_line_of_its_own(ctx: ProcessorContext, level: str) -> None:
    """Above debug the processor logs nothing itself and adds nothing: the fire line says it all."""
    with capture_logs() as logs:
        proc = LogProcessor("audit", LogSettings.model_validate({"level": level}), ctx)
        assert await proc(make_occ()) is None
    assert logs == []


async def test_log_at_debug_adds_the_payload_to_the_fire_line(ctx: ProcessorContext) -> None:
    """At ``level: debug`` the payload travels as a detail of the fire line, not as a line of its own."""
    with capture_logs() as logs:
        details = await LogProcessor("audit", LogSettings(level="debug"), ctx)(make_occ())
    assert logs == []
    assert details is not None
    assert json.loads(details["payload"]) == dict(make_occ().payload)


@pytest.mark.parametrize("level", ["debug", "info"])
async def test_log_batch_form_answers_as_the_single_form(ctx: ProcessorContext, level: str) -> None:
    """``call_many`` gives each occurrence what ``__call__`` would, in order, and logs nothing."""
    proc = LogProcessor("audit", LogSettings.model_validate({"level": level}), ctx)
    occs = [make_occ(occurrence=n, payload={"n": n}) for n in (1, 2)]
    with capture_logs() as logs:
        assert await proc.call_many(occs) == [await proc(occ) for occ in occs]
    assert logs == []


# --- webhook: success -------------------------------------------------------------------


async def test_webhook_posts_the_occurrence_with_headers(
    ctx: ProcessorContext, receiver: HttpReceiver
) -> None:
    """The body is ``Occurrence.as_json()``; idempotency, content type, agent and custom headers are sent."""
    settings = webhook(receiver, headers={"Authorization": SECRET, "X-Tenant": "acme"})
    occ = make_occ()
    result = await WebhookProcessor("hook", settings, ctx)(occ)
    assert result == {"status": "200"}
    (request,) = receiver.requests
    assert (request.method, request.path) == ("POST", "/hook")
    assert request.json() == occ.as_json()
    assert request.headers["idempotency-key"] == occ.idempotency_key
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == f"reminderd/{__version__}"
    assert request.headers["authorization"] == SECRET
    assert request.headers["x-tenant"] == "acme"


async def test_webhook_config_cannot_override_the_idempotency_key(
    ctx: ProcessorContext, receiver: HttpReceiver
) -> None:
    """Configured headers never replace ``Idempotency-Key`` or ``Content-Type``."""
    headers = {"idempotency-key": "fixed", "content-type": "text/plain"}
    await WebhookProcessor("hook", webhook(receiver, headers=headers), ctx)(make_occ())
    (request,) = receiver.requests
    assert request.headers["idempotency-key"] == make_occ().idempotency_key
    assert request.headers["content-type"] == "application/json"


@pytest.mark.parametrize("status", [200, 201, 202, 204])
async def test_webhook_any_2xx_is_success(ctx: ProcessorContext, receiver: HttpReceiver, status: int) -> None:
    """Every 2xx status counts as delivered and is returned as the detail."""
    receiver.script([status])
    assert await WebhookProcessor("hook", webhook(receiver), ctx)(make_occ()) == {"status": str(status)}


async def test_webhook_retries_keep_one_idempotency_key(
    ctx: ProcessorContext, receiver: HttpReceiver
) -> None:
    """Retries of one occurrence send the same key over one reused connection."""
    receiver.script([500, 200])
    proc = WebhookProcessor("hook", webhook(receiver), ctx)
    with pytest.raises(RetryableError):
        await proc(make_occ(attempt=1))
    assert await proc(make_occ(attempt=2)) == {"status": "200"}
    assert receiver.count_by_idempotency_key() == {make_occ().idempotency_key: 2}
    assert len({r.client_port for r in receiver.requests}) == 1


# --- webhook: failures ------------------------------------------------------------------


async def test_webhook_5xx_is_retryable(ctx: ProcessorContext, receiver: HttpReceiver) -> None:
    """A 500 raises RetryableError with the status and body, and no retry hint."""
    receiver.script([Reply(500, body="upstream\n  down")])
    with pytest.raises(RetryableError) as info:
        await WebhookProcessor("hook", webhook(receiver), ctx)(make_occ())
    assert str(info.value) == f"webhook hook: POST {receiver.url('/hook')}: HTTP 500: upstream down"
    assert info.value.retry_after_s is None


@pytest.mark.parametrize("status", [429, 503])
async def test_webhook_honours_retry_after_seconds(
    ctx: ProcessorContext, receiver: HttpReceiver, status: int
) -> None:
    """429 and 5xx with ``Retry-After: 7`` ask for a 7 s retry delay."""
    receiver.script([Reply(status, retry_after="7")])
    with pytest.raises(RetryableError) as info:
        await WebhookProcessor("hook", webhook(receiver), ctx)(make_occ())
    assert info.value.retry_after_s == 7.0
    assert str(info.value) == f"webhook hook: POST {receiver.url('/hook')}: HTTP {status}"


async def test_webhook_honours_retry_after_http_date(ctx: ProcessorContext, receiver: HttpReceiver) -> None:
    """A ``Retry-After`` HTTP date becomes the seconds left until that date."""
    receiver.script([Reply(429, retry_after=email.utils.formatdate(time.time() + 30, usegmt=True))])
    with pytest.raises(RetryableError) as info:
        await WebhookProcessor("hook", webhook(receiver), ctx)(make_occ())
    assert info.value.retry_after_s is not None
    assert 20 < info.value.retry_after_s <= 30


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("Wed, 21 Oct 2015 07:28:30", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    """Delta seconds and GMT dates are understood (past dates mean now); anything else is ignored."""
    now_s = email.utils.parsedate_to_datetime("Wed, 21 Oct 2015 07:28:00 GMT").timestamp()
    assert parse_retry_after(value, now_s) == expected


@pytest.mark.parametrize("status", [400, 404, 410, 422, 301])
async def test_webhook_other_statuses_are_permanent(
    ctx: ProcessorContext, receiver: HttpReceiver, status: int
) -> None:
    """Statuses other than 2xx, 429 and 5xx raise PermanentError carrying the status code."""
    receiver.script([Reply(status, body='{"error": "bad recipient"}')])
    with pytest.raises(PermanentError) as info:
        await WebhookProcessor("hook", webhook(receiver), ctx)(make_occ())
    assert info.value.code == str(status)
    assert str(info.value) == (
        f'webhook hook: POST {receiver.url("/hook")}: HTTP {status}: {{"error": "bad recipient"}}'
    )


async def test_webhook_error_body_is_cut_to_200_chars(ctx: ProcessorContext, receiver: HttpReceiver) -> None:
    """A long error body is shortened to a 200-character excerpt."""
    receiver.script([Reply(400, body="x" * 5000)])
    with pytest.raises(PermanentError) as info:
        await WebhookProcessor("hook", webhook(receiver), ctx)(make_occ())
    assert str(info.value).endswith(": HTTP 400: " + "x" * 199 + "…")


async def test_webhook_errors_never_show_header_values_or_query(
    ctx: ProcessorContext, receiver: HttpReceiver
) -> None:
    """Secrets in headers or the URL query stay out of error messages, even when the server echoes them."""
    receiver.script([Reply(401, body=f"invalid credentials {SECRET}")])
    settings = webhook(receiver, path="/hook?token=q-secret", headers={"Authorization": SECRET})
    with pytest.raises(PermanentError) as info:
        await WebhookProcessor("hook", settings, ctx)(make_occ())
    assert str(info.value) == f"webhook hook: POST {receiver.url('/hook')}: HTTP 401: invalid credentials ***"
    assert receiver.requests[0].path == "/hook?token=q-secret"


async def test_webhook_connection_refused_is_retryable(ctx: ProcessorContext) -> None:
    """Nothing listening on the port raises RetryableError naming the connect error."""
    url = f"http://127.0.0.1:{free_port()}/hook"
    settings = WebhookSettings(type="webhook", url=url, headers={"Authorization": SECRET})
    with pytest.raises(RetryableError) as info:
        await WebhookProcessor("hook", settings, ctx)(make_occ())
    assert str(info.value).startswith(f"webhook hook: POST {url}: ClientConnectorError: ")
    assert SECRET not in str(info.value)


async def test_webhook_timeout_is_retryable(ctx: ProcessorContext, receiver: HttpReceiver) -> None:
    """A receiver slower than the configured timeout raises RetryableError."""
    receiver.script([Reply(200, delay_s=10)])
    with pytest.raises(RetryableError) as info:
        await WebhookProcessor("hook", webhook(receiver, timeout="200ms"), ctx)(make_occ())
    assert str(info.value) == f"webhook hook: POST {receiver.url('/hook')}: timed out after 0.2s"


async def test_webhook_dropped_connection_is_retryable(ctx: ProcessorContext, receiver: HttpReceiver) -> None:
    """A server that closes the connection without answering raises RetryableError."""
    receiver.script([Reply(drop=True)])
    with pytest.raises(RetryableError) as info:
        await WebhookProcessor("hook", webhook(receiver), ctx)(make_occ())
    assert str(info.value) == (
        f"webhook hook: POST {receiver.url('/hook')}: ServerDisconnectedError: Server disconnected"
    )


# --- webhook: TLS -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1 (cert, key)."""
    made = self_signed_cert(tmp_path_factory.mktemp("tls"))
    if made is None:
        pytest.skip("openssl is needed to make a test certificate")
    return made


@pytest.fixture
def tls_receiver(self_signed: tuple[Path, Path]) -> Iterator[HttpReceiver]:
    """An HTTPS receiver whose certificate no client trusts."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*self_signed)
    with HttpReceiver(ssl_context=context) as server:
        yield server


async def test_webhook_verifies_tls_by_default(ctx: ProcessorContext, tls_receiver: HttpReceiver) -> None:
    """An untrusted certificate fails the shared, verifying client (retryably)."""
    with pytest.raises(RetryableError, match=r"ClientConnectorCertificateError: .*CERTIFICATE_VERIFY_FAILED"):
        await WebhookProcessor("hook", webhook(tls_receiver), ctx)(make_occ())


async def test_webhook_verify_tls_false_applies_to_that_webhook_alone(
    ctx: ProcessorContext, tls_receiver: HttpReceiver
) -> None:
    """``verify_tls: false`` turns verification off for its own requests; other webhooks still verify."""
    proc = WebhookProcessor("hook", webhook(tls_receiver, verify_tls=False), ctx)
    assert await proc(make_occ()) == {"status": "200"}
    with pytest.raises(RetryableError, match="CERTIFICATE_VERIFY_FAILED"):
        await WebhookProcessor("other", webhook(tls_receiver), ctx)(make_occ())


# --- stream -----------------------------------------------------------------------------


async def test_stream_xadds_every_field(ctx: ProcessorContext, aredis: aioredis.Redis) -> None:
    """The entry holds the occurrence's fields as strings and the payload as JSON."""
    occ = make_occ()
    result = await StreamProcessor("events", StreamSettings(type="stream", stream="reminders"), ctx)(occ)
    assert result is not None
    entries: Any = await aredis.xrange("reminders")
    ((entry_id, fields),) = entries
    assert result == {"stream_id": entry_id.decode()}
    decoded = {k.decode(): v.decode() for k, v in fields.items()}
    assert json.loads(decoded.pop("payload")) == dict(occ.payload)
    assert decoded == {
        "key": "send_message-42-daily",
        "rule": "send_message",
        "user_id": "42",
        "type": "daily",
        "occurrence": "3",
        "due_at_ms": "1700000000000",
        "fired_at_ms": "1700000000025",
        "attempt": "1",
        "idempotency_key": occ.idempotency_key,
    }


async def test_stream_trims_to_about_maxlen(ctx: ProcessorContext, aredis: aioredis.Redis) -> None:
    """``MAXLEN ~`` keeps the stream at maxlen plus at most one node of entries."""
    config: Any = await aredis.config_get("stream-node-max-entries")
    node_max = int(config["stream-node-max-entries"])
    proc = StreamProcessor("events", StreamSettings(type="stream", stream="s", maxlen=10), ctx)
    for n in range(3 * node_max + 5):
        await proc(make_occ(occurrence=n))
    length = await aredis.xlen("s")
    assert 10 <= length <= 10 + node_max
    newest: Any = await aredis.xrevrange("s", count=1)
    ((_, last),) = newest
    assert last[b"occurrence"] == str(3 * node_max + 4).encode()


async def test_stream_redis_error_is_retryable(ctx: ProcessorContext, aredis: aioredis.Redis) -> None:
    """A Redis error (here: the stream name holds a string) raises RetryableError chained to it."""
    await aredis.set("taken", "1")
    with pytest.raises(RetryableError) as info:
        await StreamProcessor("events", StreamSettings(type="stream", stream="taken"), ctx)(make_occ())
    assert str(info.value) == (
        "stream events: XADD taken failed: ResponseError: "
        "WRONGTYPE Operation against a key holding the wrong kind of value"
    )
    assert info.value.__cause__ is not None


async def test_stream_batch_form_adds_every_entry_in_one_round_trip(
    ctx: ProcessorContext, aredis: aioredis.Redis
) -> None:
    """``call_many`` adds one entry per occurrence, in order, each result naming its own entry id."""
    proc = StreamProcessor("events", StreamSettings(type="stream", stream="reminders"), ctx)
    results = await proc.call_many([make_occ(occurrence=n) for n in (1, 2, 3)])
    entries: Any = await aredis.xrange("reminders")
    assert [f[b"occurrence"] for _, f in entries] == [b"1", b"2", b"3"]
    assert results == [{"stream_id": entry_id.decode()} for entry_id, _ in entries]


async def test_stream_batch_form_fails_each_entry_redis_refused(
    ctx: ProcessorContext, aredis: aioredis.Redis
) -> None:
    """An entry Redis refuses (the stream name holds a string) is a RetryableError in its place."""
    await aredis.set("taken", "1")
    proc = StreamProcessor("events", StreamSettings(type="stream", stream="taken"), ctx)
    results = await proc.call_many([make_occ(occurrence=1), make_occ(occurrence=2)])
    assert len(results) == 2
    for result in results:
        assert isinstance(result, RetryableError)
        assert str(result).startswith("stream events: XADD taken failed: ResponseError: WRONGTYPE")


async def test_stream_batch_form_raises_when_redis_cannot_be_reached(ctx: ProcessorContext) -> None:
    """A round trip that fails fails the whole batch (the pipeline retries every occurrence)."""
    down = aioredis.Redis(port=free_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    try:
        dead_ctx = ProcessorContext(redis=down, http=ctx.http, names=ctx.names, log=ctx.log)
        proc = StreamProcessor("events", StreamSettings(type="stream", stream="s"), dead_ctx)
        with pytest.raises(RetryableError, match=r"^stream events: XADD s failed: ConnectionError: "):
            await proc.call_many([make_occ()])
    finally:
        await down.aclose()


async def test_stream_unreachable_redis_is_retryable(ctx: ProcessorContext) -> None:
    """A Redis that cannot be reached raises RetryableError."""
    down = aioredis.Redis(port=free_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    try:
        dead_ctx = ProcessorContext(redis=down, http=ctx.http, names=ctx.names, log=ctx.log)
        with pytest.raises(RetryableError, match=r"^stream events: XADD s failed: ConnectionError: "):
            await StreamProcessor("events", StreamSettings(type="stream", stream="s"), dead_ctx)(make_occ())
    finally:
        await down.aclose()


# --- plugins: dotted path ---------------------------------------------------------------


async def test_plugin_loads_by_dotted_path(ctx: ProcessorContext) -> None:
    """``module:Class`` is constructed with the name, the options and the context."""
    settings = PluginSettings(
        type="plugin", path="tests.plugin_example:EchoProcessor", options={"reply": "hi"}
    )
    proc = load_plugin("echo", settings, ctx)
    assert isinstance(proc, EchoProcessor)
    assert (proc.name, proc.options, proc.ctx) == ("echo", {"reply": "hi"}, ctx)
    assert await proc(make_occ()) == {"echo": "hi"}
    await proc.aclose()
    assert proc.closed


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"path": "tests.no_such_module:Thing"},
            "processors.p: module 'tests.no_such_module' not found",
        ),
        (
            {"path": "nosuchpkg.sub:Thing"},
            "processors.p: module 'nosuchpkg.sub' not found",
        ),
        (
            {"path": "tests.plugin_example:Missing"},
            "processors.p: module 'tests.plugin_example' has no attribute 'Missing'",
        ),
        (
            {"path": "tests.plugin_example:NOT_CALLABLE"},
            "processors.p: 'tests.plugin_example:NOT_CALLABLE' is not callable",
        ),
        (
            {"path": "tests.plugin_example:Exploding", "options": {"a": 1}},
            "processors.p: 'tests.plugin_example:Exploding' raised ValueError: "
            "option 'token' is required, got ['a']",
        ),
        (
            {"path": "tests.plugin_example:NoClose"},
            "processors.p: 'tests.plugin_example:NoClose' did not build a Processor: "
            "aclose() must be an async method",
        ),
        (
            {"path": "tests.plugin_example:SyncCall"},
            "processors.p: 'tests.plugin_example:SyncCall' did not build a Processor: "
            "__call__() must be an async method",
        ),
        (
            {"path": "tests.plugin_example:make_occ_missing"},
            "processors.p: module 'tests.plugin_example' has no attribute 'make_occ_missing'",
        ),
        (
            {},
            "processors.p: a plugin needs 'path' (module:Class) or 'entry_point'",
        ),
        (
            {"path": "tests.plugin_example:EchoProcessor", "entry_point": "echo"},
            "processors.p: set either 'path' or 'entry_point', not both",
        ),
    ],
)
def test_plugin_bad_settings_raise_config_error(
    ctx: ProcessorContext, fields: dict[str, Any], message: str
) -> None:
    """Every way a plugin can fail to load is a ConfigError naming the processor and the reason."""
    settings = PluginSettings.model_validate({"type": "plugin", **fields})
    with pytest.raises(ConfigError) as info:
        load_plugin("p", settings, ctx)
    assert str(info.value) == message


def test_plugin_path_without_colon_is_rejected(ctx: ProcessorContext) -> None:
    """A path that slipped past validation without ``module:Class`` still gets a clear error."""
    settings = PluginSettings.model_construct(type="plugin", path="tests.plugin_example", options={})
    with pytest.raises(ConfigError) as info:
        load_plugin("p", settings, ctx)
    assert (
        str(info.value) == "processors.p: path 'tests.plugin_example' must look like 'package.module:Class'"
    )


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "import definitely_missing_dependency_xyz\n",
            "processors.p: importing '{mod}' failed: No module named 'definitely_missing_dependency_xyz'",
        ),
        (
            "raise RuntimeError('plugin exploded at import')\n",
            "processors.p: importing '{mod}' failed: RuntimeError: plugin exploded at import",
        ),
    ],
)
def test_plugin_module_that_fails_to_import(
    ctx: ProcessorContext,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    source: str,
    message: str,
) -> None:
    """A plugin module that exists but cannot be imported says why, not 'not found'."""
    mod = f"reminderd_test_plugin_{uuid.uuid4().hex}"
    (tmp_path / f"{mod}.py").write_text(source)
    monkeypatch.syspath_prepend(tmp_path)
    settings = PluginSettings(type="plugin", path=f"{mod}:Thing")
    with pytest.raises(ConfigError) as info:
        load_plugin("p", settings, ctx)
    assert str(info.value) == message.format(mod=mod)


# --- plugins: entry points --------------------------------------------------------------


def install_dist(site: Path, dist: str, entries: dict[str, str]) -> None:
    """Write a minimal ``<dist>-1.0.dist-info`` declaring ``entries`` in reminderd's group."""
    info = site / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "".join(f"{name} = {value}\n" for name, value in entries.items())
    (info / "entry_points.txt").write_text(f"[reminderd.processors]\n{lines}")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory on sys.path where tests install fake distributions."""
    monkeypatch.syspath_prepend(tmp_path)
    return tmp_path


async def test_plugin_loads_by_entry_point(ctx: ProcessorContext, site: Path) -> None:
    """An entry point in group ``reminderd.processors`` names the class to construct."""
    install_dist(site, "reminderd_echo", {"echo": "tests.plugin_example:EchoProcessor"})
    settings = PluginSettings(type="plugin", entry_point="echo", options={"reply": "ep"})
    proc = load_plugin("greeter", settings, ctx)
    assert isinstance(proc, EchoProcessor)
    assert proc.name == "greeter"
    assert await proc(make_occ()) == {"echo": "ep"}


def test_plugin_unknown_entry_point_lists_installed(ctx: ProcessorContext, site: Path) -> None:
    """A missing entry point is a ConfigError listing the ones that exist."""
    install_dist(site, "reminderd_echo", {"echo": "tests.plugin_example:EchoProcessor", "alpha": "x:Y"})
    with pytest.raises(ConfigError) as info:
        load_plugin("p", PluginSettings(type="plugin", entry_point="nope"), ctx)
    assert str(info.value) == (
        "processors.p: no entry point 'nope' in group 'reminderd.processors' (installed: alpha, echo)"
    )


def test_plugin_entry_point_that_fails_to_load(ctx: ProcessorContext, site: Path) -> None:
    """An entry point whose target cannot be imported is a ConfigError naming it."""
    install_dist(site, "reminderd_broken", {"broken": "no_such_module_xyz:Thing"})
    with pytest.raises(ConfigError) as info:
        load_plugin("p", PluginSettings(type="plugin", entry_point="broken"), ctx)
    assert str(info.value) == (
        "processors.p: loading entry point 'broken' (no_such_module_xyz:Thing) failed: "
        "ModuleNotFoundError: No module named 'no_such_module_xyz'"
    )


def test_plugin_entry_point_not_a_processor(ctx: ProcessorContext, site: Path) -> None:
    """An entry point that builds something other than a processor is rejected at load."""
    install_dist(site, "reminderd_bad", {"bad": "tests.plugin_example:NoClose"})
    with pytest.raises(ConfigError) as info:
        load_plugin("p", PluginSettings(type="plugin", entry_point="bad"), ctx)
    assert str(info.value) == (
        "processors.p: entry point 'bad' (tests.plugin_example:NoClose) did not build a Processor: "
        "aclose() must be an async method"
    )


def test_plugin_ambiguous_entry_point(ctx: ProcessorContext, site: Path) -> None:
    """Two distributions declaring one name differently is an error, not a silent pick."""
    install_dist(site, "reminderd_one", {"echo": "tests.plugin_example:EchoProcessor"})
    install_dist(site, "reminderd_two", {"echo": "tests.plugin_example:SyncCall"})
    with pytest.raises(ConfigError) as info:
        load_plugin("p", PluginSettings(type="plugin", entry_point="echo"), ctx)
    assert str(info.value) == (
        "processors.p: entry point 'echo' is ambiguous (provided by "
        "reminderd_one (tests.plugin_example:EchoProcessor), reminderd_two (tests.plugin_example:SyncCall))"
    )


# --- the receiver itself ------------------------------------------------------------------


def test_receiver_scripts_per_path_then_shared_then_default() -> None:
    """Path queues win over the shared queue, which wins over the default reply."""
    with HttpReceiver(default=204) as server:
        server.script([500], path="/a")
        server.script([429])
        with httpx.Client() as client:
            codes = [client.post(server.url(p)).status_code for p in ("/b", "/a", "/a", "/b")]
        assert codes == [429, 500, 204, 204]
        assert [r.path for r in server.wait_for(lambda reqs: len(reqs) == 4)] == ["/b", "/a", "/a", "/b"]


def test_receiver_close_releases_a_hanging_request() -> None:
    """Closing the receiver ends a hanging request with a client error instead of a hang."""
    import threading

    server = HttpReceiver().start()
    server.script([Reply(hang=True)])
    errors: list[Exception] = []

    def call() -> None:
        try:
            httpx.post(server.url("/"), timeout=30)
        except httpx.HTTPError as exc:
            errors.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    server.wait_for(lambda reqs: len(reqs) == 1)
    started = time.monotonic()
    server.close()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert time.monotonic() - started < 5
    assert len(errors) == 1


def test_receiver_wait_for_times_out() -> None:
    """``wait_for`` raises at its deadline when the condition never holds."""
    with HttpReceiver() as server, pytest.raises(TimeoutError, match=r"within 0\.05s; 0 request"):
        server.wait_for(lambda reqs: len(reqs) > 0, timeout_s=0.05)
