"""A real loopback HTTP server speaking the Twilio Messages API, for SMS tests.

Unit tests and end-to-end tests (daemon in a subprocess) point ``twilio.base_url`` at it::

    with TwilioServer() as twilio:          # account_sid / auth_token: ACCOUNT_SID / AUTH_TOKEN
        twilio.script(TwilioReply.too_many(retry_after="7"), TwilioReply.server_error())
        ... send to twilio.base_url ...
        [req] = twilio.wait_for(1)          # or wait_for(lambda reqs: ...), or await wait_for_async(...)
        assert req.to == "+4915112345678" and req.body == "Hello"

``POST /2010-04-01/Accounts/{sid}/Messages.json`` checks basic auth (401, code 20003),
requires ``To``, ``Body`` and ``From`` or ``MessagingServiceSid`` (400, codes 21604,
21602, 21603), then answers the next scripted reply, else 201 with a JSON body holding a
fresh ``sid``. Errors carry Twilio's JSON error body (``code``, ``message``, ``more_info``,
``status``). Any other path answers 404 (code 20404). Every request is recorded with its
arrival time (wall clock and monotonic), whatever the answer.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs

from tests.serving import poll, poll_async, serve_in_thread, stop_serving

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "tw-secret-token-5f1e"
_PATH = re.compile(r"^/2010-04-01/Accounts/([^/]+)/Messages\.json$")


@dataclass(frozen=True)
class TwilioReply:
    """A scripted answer; ``code``/``message`` fill Twilio's JSON error body."""

    status: int = 201
    code: int | None = None
    message: str = ""
    retry_after: str | None = None
    delay_s: float = 0.0

    @classmethod
    def too_many(cls, retry_after: str | None = "1") -> TwilioReply:
        """429 with Retry-After, as Twilio answers when a queue is full."""
        return cls(429, 20429, "Too Many Requests", retry_after=retry_after)

    @classmethod
    def server_error(cls, status: int = 500) -> TwilioReply:
        """A 5xx without Retry-After."""
        return cls(status, 20500, "Internal Server Error")

    @classmethod
    def invalid_to(cls) -> TwilioReply:
        """400 code 21211, Twilio's answer to a number it cannot send to."""
        return cls(400, 21211, "The 'To' number is not a valid phone number.")


@dataclass(frozen=True)
class SmsRequest:
    """One request as received."""

    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    form: dict[str, str]
    authorized: bool
    arrived_at_s: float  # wall clock (comparable with other processes' epoch times)
    arrived_mono_s: float  # time.monotonic() in this process, for rate measurements
    status: int
    sid: str | None = None

    @property
    def to(self) -> str | None:
        """The ``To`` form field."""
        return self.form.get("To")

    @property
    def body(self) -> str | None:
        """The ``Body`` form field."""
        return self.form.get("Body")


@dataclass
class _State:
    account_sid: str
    auth_token: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: list[SmsRequest] = field(default_factory=list)
    script: deque[TwilioReply] = field(default_factory=deque)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: _State


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log."""

    def do_POST(self) -> None:
        """Handle a Messages request (or answer 404 for any other path)."""
        mono, wall = time.monotonic(), time.time()
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode("utf-8", "replace")
        form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
        state = self.server.state
        match = _PATH.match(self.path)
        authorized = self._authorized(state) and match is not None and match.group(1) == state.account_sid
        reply, sid = self._decide(state, match is not None, authorized, form)
        record = SmsRequest(
            self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
            form, authorized, wall, mono, reply.status, sid,
        )  # fmt: skip
        with state.lock:
            state.requests.append(record)
        if reply.delay_s:
            time.sleep(reply.delay_s)
        self._send(reply, sid, form)

    do_GET = do_PUT = do_DELETE = do_POST

    def _authorized(self, state: _State) -> bool:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return user == state.account_sid and password == state.auth_token

    def _decide(
        self, state: _State, known_path: bool, authorized: bool, form: dict[str, str]
    ) -> tuple[TwilioReply, str | None]:
        if not known_path or self.command != "POST":
            return TwilioReply(404, 20404, "The requested resource was not found"), None
        if not authorized:
            return TwilioReply(401, 20003, "Authenticate"), None
        if not form.get("To"):
            return TwilioReply(400, 21604, "A 'To' phone number is required."), None
        if not form.get("Body"):
            return TwilioReply(400, 21602, "Message body is required."), None
        if not (form.get("From") or form.get("MessagingServiceSid")):
            return TwilioReply(400, 21603, "A 'From' phone number is required."), None
        with state.lock:
            reply = state.script.popleft() if state.script else TwilioReply()
        return reply, ("SM" + uuid.uuid4().hex if 200 <= reply.status < 300 else None)

    def _send(self, reply: TwilioReply, sid: str | None, form: dict[str, str]) -> None:
        if sid is not None:
            data: dict[str, Any] = {
                "sid": sid,
                "status": "queued",
                "to": form.get("To"),
                "body": form.get("Body"),
            }
        else:
            info = f"https://www.twilio.com/docs/errors/{reply.code}"
            data = {"code": reply.code, "message": reply.message, "more_info": info, "status": reply.status}
        payload = json.dumps(data).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        if reply.retry_after is not None:
            self.send_header("Retry-After", reply.retry_after)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


Predicate = Callable[[list[SmsRequest]], bool]


class TwilioServer:
    """The fake Messages API on 127.0.0.1 with a free port; a context manager."""

    def __init__(self, account_sid: str = ACCOUNT_SID, auth_token: str = AUTH_TOKEN) -> None:
        self._state = _State(account_sid, auth_token)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def account_sid(self) -> str:
        """The account the server accepts."""
        return self._state.account_sid

    @property
    def auth_token(self) -> str:
        """The token the server accepts."""
        return self._state.auth_token

    def start(self) -> TwilioServer:
        """Bind a free loopback port and serve in a background thread."""
        server = _Server(("127.0.0.1", 0), _Handler)
        server.state = self._state
        self._server = server
        self._thread = serve_in_thread(server, "twilio-server")
        return self

    def close(self) -> None:
        """Stop serving and wait for the thread."""
        if self._server is None:
            return
        stop_serving(self._server, self._thread)
        self._server = None

    def __enter__(self) -> TwilioServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def base_url(self) -> str:
        """What to configure as ``twilio.base_url``."""
        if self._server is None:
            raise RuntimeError("server is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def script(self, *replies: TwilioReply) -> None:
        """Queue answers for the next valid, authorized requests (then 201 again)."""
        with self._state.lock:
            self._state.script.extend(replies)

    @property
    def requests(self) -> list[SmsRequest]:
        """A snapshot of every request so far, oldest first."""
        with self._state.lock:
            return list(self._state.requests)

    @property
    def sent(self) -> list[SmsRequest]:
        """The requests answered with success: the messages Twilio would deliver."""
        return [r for r in self.requests if r.sid is not None]

    def wait_for(self, condition: int | Predicate, timeout_s: float = 5.0) -> list[SmsRequest]:
        """Poll until ``condition`` (a request count, or a predicate) holds; raise at the deadline."""
        return poll(lambda: self.requests, _as_predicate(condition), timeout_s)

    async def wait_for_async(self, condition: int | Predicate, timeout_s: float = 5.0) -> list[SmsRequest]:
        """``wait_for`` for async tests: polls without blocking the event loop."""
        return await poll_async(lambda: self.requests, _as_predicate(condition), timeout_s)


def _as_predicate(condition: int | Predicate) -> Predicate:
    if isinstance(condition, int):
        count = condition
        return lambda requests: len(requests) >= count
    return condition
