"""The ``webhook`` processor: POST the occurrence as JSON to a configured URL.

The receiver deduplicates on the ``Idempotency-Key`` header, which is the same for every
retry of one occurrence on any instance. 2xx is success; 429, 5xx, timeouts and
connection errors are retried (honouring ``Retry-After``); any other status is
permanent. Configured header values can be secrets (``Authorization``), so error
messages never contain them, nor the URL's query or credentials.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import quote

import orjson
from aiohttp import BytesPayload
from yarl import URL

from reminderd import __version__
from reminderd.config.processors import WebhookSettings
from reminderd.models import Occurrence
from reminderd.processors.base import ProcessorContext
from reminderd.processors.http import excerpt, refuse, scrubbed


def safe_url(url: URL) -> str:
    """The URL without credentials, query or fragment, fit for logs and errors."""
    port = f":{url.explicit_port}" if url.explicit_port is not None else ""
    return f"{url.scheme}://{url.raw_host}{port}{url.path}"


_HEADER_SAFE = "-._~:!$&'()*+,;=@/"  # printable ASCII kept as is in the header
_AS_IS = re.compile(r"[A-Za-z0-9\-._~:!$&'()*+,;=@/]*").fullmatch


def _sent_as_is(key: str) -> bool:
    """Whether ``quote`` would leave ``key`` unchanged (one regex match instead of a quote per call)."""
    return _AS_IS(key) is not None


class WebhookProcessor:
    """POSTs ``Occurrence.as_json()`` and maps the outcome onto the error tree."""

    def __init__(self, name: str, settings: WebhookSettings, ctx: ProcessorContext) -> None:
        self.name = name
        self._url = str(settings.url)
        self._where = f"webhook {name}: POST {safe_url(URL(self._url))}"
        self._headers = {"User-Agent": f"reminderd/{__version__}", **settings.headers}
        for header in [h for h in self._headers if h.lower() == "content-type"]:
            del self._headers[header]
        self._headers["Content-Type"] = "application/json"
        self._secrets = tuple(v for v in settings.headers.values() if v)
        self._timeout_s = None if settings.timeout_ms is None else settings.timeout_ms / 1000
        self._http = ctx.http
        # aiohttp sets TLS verification per request: turning it off here touches no other webhook.
        self._tls: dict[str, bool] = {} if settings.verify_tls else {"ssl": False}

    async def __call__(self, occ: Occurrence) -> Mapping[str, str] | None:
        """POST the occurrence; return ``{"status": "<code>"}`` on 2xx."""
        # Header values are ASCII; a key with other characters is sent percent-encoded (UTF-8).
        key = occ.idempotency_key
        headers = {
            **self._headers,
            "Idempotency-Key": key if _sent_as_is(key) else quote(key, safe=_HEADER_SAFE),
        }
        response = await self._http.request(
            "POST",
            self._url,
            where=self._where,
            quote=lambda text: scrubbed(text, self._secrets),
            data=BytesPayload(orjson.dumps(occ.as_json()), content_type="application/json"),
            headers=headers,
            timeout_s=self._timeout_s,
            **self._tls,
        )
        if response.is_success:
            return {"status": str(response.status)}
        status, text = str(response.status), excerpt(response.text, self._secrets)
        refuse(response, f"{self._where}: HTTP {status}" + (f": {text}" if text else ""), status)

    async def aclose(self) -> None:
        """Nothing of its own to release: the HTTP client is the daemon's."""
