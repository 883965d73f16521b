"""The ``webhook`` processor: POST the occurrence as JSON to a configured URL.

The receiver deduplicates on the ``Idempotency-Key`` header, which is the same for every
retry of one occurrence on any instance. 2xx is success; 429, 5xx, timeouts and
connection errors are retried (honouring ``Retry-After``); any other status is
permanent. Configured header values can be secrets (``Authorization``), so error
messages never contain them, nor the URL's query or credentials.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

import httpx
import orjson

from reminderd import __version__
from reminderd.config.processors import WebhookSettings
from reminderd.models import Occurrence
from reminderd.processors.base import ProcessorContext
from reminderd.processors.http import answer, excerpt, refuse, scrubbed


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
        pending = self._client().post(self._url, content=body, headers=headers, timeout=timeout)
        response = await answer(self._where, pending, lambda text: scrubbed(text, self._secrets))
        status = response.status_code
        if 200 <= status < 300:
            return {"status": str(status)}
        text = excerpt(response.text, self._secrets)
        refuse(response, f"{self._where}: HTTP {status}" + (f": {text}" if text else ""), str(status))

    async def aclose(self) -> None:
        """Close the private client, if one was made; the shared one is the daemon's."""
        if self._own is not None:
            await self._own.aclose()
            self._own = None
