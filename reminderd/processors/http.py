"""How the HTTP processors (``webhook``, ``sms``) read an HTTP outcome: one rule for both.

2xx (or what the processor counts as success) is success; 429, 5xx, timeouts and
connection errors are retryable, honouring ``Retry-After``; any other status is permanent.
Messages never quote a value the processor marks secret. Transport failures are mapped
where requests are sent, in ``reminderd.processors.http_client``.
"""

from __future__ import annotations

import base64
import email.utils
import time
from collections.abc import Iterable
from typing import NoReturn

from reminderd.errors import PermanentError, RetryableError
from reminderd.processors.http_client import HttpAnswer

EXCERPT_CHARS = 200


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


def refuse(response: HttpAnswer, detail: str, code: str) -> NoReturn:
    """Raise what a non-success answer means: 429 and 5xx retryable, any other status permanent
    (dead-lettered with ``code``)."""
    status = response.status
    if status == 429 or status >= 500:
        raise RetryableError(detail, retry_after_s=parse_retry_after(response.headers.get("Retry-After")))
    raise PermanentError(detail, code=code)


def scrubbed(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every one of ``secrets`` masked, should a server or library echo one back."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def excerpt(text: str, secrets: Iterable[str]) -> str:
    """A response body for an error message: secrets masked, on one line, at most 200 chars."""
    text = " ".join(scrubbed(text, secrets).split())
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"


def basic_auth(username: str, password: str) -> dict[str, str]:
    """The ``Authorization`` header of HTTP basic authentication (UTF-8, RFC 7617)."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return {"Authorization": f"Basic {token}"}
