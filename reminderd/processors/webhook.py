"""The ``webhook`` processor: POST the occurrence as JSON to a configured URL.

The receiver deduplicates on the ``Idempotency-Key`` header, which is the same for every
retry of one occurrence on any instance. 2xx is success; 429, 5xx, timeouts and
connection errors are retried (honouring ``Retry-After``); any other status is
permanent. Configured header values can be secrets (``Authorization``), so error
messages never contain them, nor the URL's query or credentials.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from urllib.parse import quote

import httpx
import orjson

from reminderd import __version__
from reminderd.config.processors import WebhookSettings
from reminderd.errors import PermanentError, RetryableError
from reminderd.models import Occurrence
from reminderd.processors.base import ProcessorContext

BODY_EXCERPT_CHARS = 200


def parse_retry_after(value: str | None, now_s: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta seconds or HTTP date); None if unusable."""
    if value is None or not (text := value.strip()):
        return None
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    now = time.time() if now_s is None else now_s
    return max(0.0, when.timestamp() - now)


def safe_url(url: httpx.URL) -> str:
    """The URL without credentials, query or fragment, fit for logs and errors."""
    port = f":{url.port}" if url.port is not None else ""
    return f"{url.scheme}://{url.host}{port}{url.path}"


_HEADER_SAFE = "-._~:!$&'()*+,;=@/"  # printable ASCII kept as is in the header


class WebhookProcessor:
    """POSTs ``Occurrence.as_json()`` and maps the outcome onto the error tree."""

    def __init__(self, name: str, settings: WebhookSettings, ctx: ProcessorContext) -> None:
        self.name = name
        self._url = httpx.URL(str(settings.url))
        self._where = f"webhook {name}: POST {safe_url(self._url)}"
        self._headers = httpx.Headers({"User-Agent": f"reminderd/{__version__}"})
        self._headers.update(settings.headers)
        self._headers["Content-Type"] = "application/json"
        self._secrets = tuple(v for v in settings.headers.values() if v)
        self._timeout = None if settings.timeout_ms is None else httpx.Timeout(settings.timeout_ms / 1000)
        self._shared = ctx.http
        self._verify_tls = settings.verify_tls
        self._own: httpx.AsyncClient | None = None

    def _client(self) -> httpx.AsyncClient:
        """The shared client, or (``verify_tls: false``) a private one made on first use.

        httpx fixes TLS verification per client, so turning it off for one webhook must
        not turn it off for every other HTTP processor sharing the daemon's client.
        """
        if self._verify_tls:
            return self._shared
        if self._own is None:
            self._own = httpx.AsyncClient(verify=False, timeout=self._shared.timeout)
        return self._own

    async def __call__(self, occ: Occurrence) -> Mapping[str, str] | None:
        """POST the occurrence; return ``{"status": "<code>"}`` on 2xx."""
        headers = self._headers.copy()
        # Header values are ASCII; a key with other characters is sent percent-encoded (UTF-8).
        headers["Idempotency-Key"] = quote(occ.idempotency_key, safe=_HEADER_SAFE)
        body = orjson.dumps(occ.as_json())
        timeout = self._timeout if self._timeout is not None else httpx.USE_CLIENT_DEFAULT
        try:
            response = await self._client().post(self._url, content=body, headers=headers, timeout=timeout)
        except httpx.TimeoutException as exc:
            raise RetryableError(f"{self._where}: timed out ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise RetryableError(f"{self._where}: {type(exc).__name__}: {self._scrub(str(exc))}") from exc
        return self._outcome(response)

    def _outcome(self, response: httpx.Response) -> dict[str, str]:
        status = response.status_code
        if 200 <= status < 300:
            return {"status": str(status)}
        detail = f"{self._where}: HTTP {status}{self._excerpt(response)}"
        if status == 429 or status >= 500:
            retry_after_s = parse_retry_after(response.headers.get("Retry-After"))
            raise RetryableError(detail, retry_after_s=retry_after_s)
        raise PermanentError(detail, code=str(status))

    def _excerpt(self, response: httpx.Response) -> str:
        text = self._scrub(" ".join(response.text.split()))
        if not text:
            return ""
        if len(text) > BODY_EXCERPT_CHARS:
            text = text[: BODY_EXCERPT_CHARS - 1] + "…"
        return f": {text}"

    def _scrub(self, text: str) -> str:
        """Mask configured header values, should a server or library echo one back."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    async def aclose(self) -> None:
        """Close the private client, if one was made; the shared one is the daemon's."""
        if self._own is not None:
            await self._own.aclose()
            self._own = None
