"""How the HTTP processors (``webhook``, ``sms``) read an HTTP outcome: one rule for both.

2xx (or what the processor counts as success) is success; 429, 5xx, timeouts and
connection errors are retryable, honouring ``Retry-After``; any other status is permanent.
Messages never quote a value the processor marks secret, and quote a transport error's
own text only when the processor asks for it.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import NoReturn

import httpx

from reminderd.errors import PermanentError, RetryableError

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


async def answer(
    where: str, pending: Awaitable[httpx.Response], quote: Callable[[str], str] | None = None
) -> httpx.Response:
    """Await an httpx call; a transport failure raises ``RetryableError``.

    Its text is quoted only through ``quote`` (which masks what must not show); without
    it only the error's type is named, as URLs of some gateways carry secrets.
    """
    try:
        return await pending
    except httpx.TimeoutException as exc:
        raise RetryableError(f"{where}: timed out ({type(exc).__name__})") from exc
    except httpx.HTTPError as exc:
        name = type(exc).__name__
        reason = f"{name}: {quote(str(exc))}" if quote is not None else f"request failed ({name})"
        raise RetryableError(f"{where}: {reason}") from exc


def refuse(response: httpx.Response, detail: str, code: str) -> NoReturn:
    """Raise what a non-success answer means: 429 and 5xx retryable, any other status permanent
    (dead-lettered with ``code``)."""
    status = response.status_code
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
