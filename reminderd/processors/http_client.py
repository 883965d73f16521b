"""The daemon's one HTTP client, shared by the HTTP processors (``webhook``, ``sms``) and plugins.

It holds at the daemon's full concurrency. Each request first takes a connection slot of
its host (``daemon.http_connections_per_host``, by default ``daemon.concurrency``); the
wait for a slot is not part of the attempt: it is left out of the processor's timeout
(``reminderd.processors.budget``), so a request that never left cannot time out and be
sent again. Once it has a slot, the request's own timeout covers connecting, sending and
reading the answer. aiohttp, not httpx: at 1,000 concurrent calls to a loopback receiver
httpx's pool spent 93 ms of CPU per call and timed every call out, aiohttp 0.6 ms and none
(``docs/benchmark.md``). The answer is read whole into an ``HttpAnswer``, a plain value.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:  # aiohttp (and yarl) load with the first request: a daemon without HTTP processors
    import aiohttp  # starts about 0.1 s sooner, which a recovery after downtime waits for
    from multidict import CIMultiDictProxy
    from yarl import URL

from reminderd.errors import RetryableError
from reminderd.processors.budget import left_s, not_counted

DEFAULT_TIMEOUT_S = 10.0
URL_CACHE_SIZE = 1024


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """An HTTP response, read whole: status, headers (case-insensitive) and body."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    @property
    def text(self) -> str:
        """The body as text (UTF-8, undecodable bytes replaced)."""
        return self.body.decode("utf-8", "replace")

    @property
    def is_success(self) -> bool:
        """A 2xx status."""
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The body parsed as JSON; ``ValueError`` if it is not."""
        return orjson.loads(self.body)


class HttpClient:
    """One ``aiohttp.ClientSession`` and a connection-slot semaphore per host.

    Constructing it does no I/O; ``async with`` opens the session and closes it.
    """

    def __init__(self, connections_per_host: int, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.connections_per_host = connections_per_host
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None
        self._open = False
        self._slots: dict[str, _Slots] = {}
        self._urls: dict[str, URL] = {}
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}
        self.queued = 0  # requests waiting for a connection slot now

    async def __aenter__(self) -> HttpClient:
        self._open = True
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._open = False
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The open session, for a plugin that needs aiohttp itself (its waits are its own).

        Created at its first use inside ``async with``, so a daemon whose processors send no
        HTTP never imports aiohttp. The webhook and SMS processors import it when they are
        built, before service starts; a plugin's first request imports it (once, ~0.1 s)."""
        if not self._open:
            raise RuntimeError("the HTTP client is not open (use it as `async with`)")
        if self._session is None:
            import aiohttp

            # The semaphores bound the connections per host, so the connector need not.
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
            self._session = aiohttp.ClientSession(
                connector=connector, raise_for_status=False, cookie_jar=aiohttp.DummyCookieJar()
            )
        return self._session

    def _slot(self, host: str) -> _Slots:
        slot = self._slots.get(host)
        if slot is None:
            slot = self._slots[host] = _Slots(self.connections_per_host)
        return slot

    async def request(
        self, method: str, url: str, *, where: str, quote: Callable[[str], str] | None = None, **options: Any
    ) -> HttpAnswer:
        """Send one request and read its answer; a transport failure raises ``RetryableError``.

        ``options`` are aiohttp's (``headers``, ``data``, ``json``, ``auth``, ``ssl``) plus
        ``timeout_s`` (default: the client's). The error names ``where``; a transport error's
        own text is quoted only through ``quote`` (which masks what must not show), as URLs
        of some gateways carry secrets.
        """
        target = self._url(url)
        slot = self._slot(target.host or "")
        if not slot.take_now():
            self.queued += 1
            try:
                async with not_counted():
                    await slot.wait()
            finally:
                self.queued -= 1
        total_s = options.pop("timeout_s", None) or self.timeout_s
        timeout = self._timeout(total_s)
        try:
            return await self._send(method, target, where, quote, timeout=timeout, **options)
        finally:
            slot.give_back()

    def _url(self, url: str) -> URL:
        """``url`` parsed once: a webhook posts to the same URL every time (aiohttp takes it as is)."""
        parsed = self._urls.get(url)
        if parsed is None:
            if len(self._urls) >= URL_CACHE_SIZE:
                self._urls.clear()  # templated gateway URLs (one per recipient) must not pile up
            from yarl import URL

            parsed = self._urls[url] = URL(url)
        return parsed

    def _timeout(self, total_s: float) -> aiohttp.ClientTimeout:
        """The request's own timeout, or none when the enclosing budget ends first.

        Under the pipeline's ``budget`` (the processor's timeout) a second timer per request
        is redundant whenever the budget is the shorter: the budget's ``TimeoutError`` ends
        the request the same way.
        """
        left = left_s()
        if left is not None and left <= total_s:
            total_s = 0.0  # the key of aiohttp's "no timeout"
        timeout = self._timeouts.get(total_s)
        if timeout is None:
            import aiohttp

            timeout = self._timeouts[total_s] = aiohttp.ClientTimeout(total=total_s or None)
        return timeout

    async def _send(
        self, method: str, url: URL, where: str, quote: Callable[[str], str] | None, **options: Any
    ) -> HttpAnswer:
        import aiohttp

        try:
            async with self.session.request(method, url, **options) as response:
                body = await response.read()
                return HttpAnswer(response.status, response.headers, body)
        except TimeoutError as exc:  # aiohttp's own timeout (the budget's arrives as a cancellation)
            raise RetryableError(f"{where}: timed out after {options['timeout'].total:g}s") from exc
        except aiohttp.ClientError as exc:
            name = type(exc).__name__
            reason = f"{name}: {quote(str(exc))}" if quote is not None else f"request failed ({name})"
            raise RetryableError(f"{where}: {reason}") from exc


class _Slots:
    """The connection slots of one host: taken and given back in O(1), waiters served in order.

    ``asyncio.Semaphore`` would do, but its ``locked()`` walks every waiter: with a thousand
    requests queued for a slow host that is a thousand steps per request.
    """

    def __init__(self, size: int) -> None:
        self.free = size
        self._waiting: deque[asyncio.Future[None]] = deque()

    def take_now(self) -> bool:
        """Take a slot if one is free and nobody waits before us."""
        if self.free > 0 and not self._waiting:
            self.free -= 1
            return True
        return False

    async def wait(self) -> None:
        """Wait until a slot is handed over (a cancelled waiter hands a late slot back)."""
        handed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(handed)
        try:
            await handed
        except asyncio.CancelledError:
            if handed.done() and not handed.cancelled():
                self.give_back()
            raise

    def give_back(self) -> None:
        """Hand the slot to the first live waiter, else free it."""
        while self._waiting:
            handed = self._waiting.popleft()
            if not handed.done():
                handed.set_result(None)
                return
        self.free += 1
