"""Masking of phone numbers and URL credentials before anything reaches a log line or an error.

Reminders carry personal data. Phone numbers are masked at the source (the SMS processor
logs and raises only masked numbers) and again by ``mask_pii``, a structlog processor
that catches E.164-looking numbers in any string of a log event, should one slip through
a library message or an exception text. Only strings are searched: epoch milliseconds
and other integers are never mistaken for phone numbers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from structlog.typing import EventDict, WrappedLogger

# "+", a non-zero digit and 6 to 14 more digits, not glued to other digits or letters.
_E164_LIKE = re.compile(r"(?<![\w+*])\+[1-9]\d{6,14}(?!\d)")
# Field names whose values are secrets, in configs and log events alike.
SECRET_NAME = re.compile(r"pass|secret|token|auth|credential|api[_-]?key|private|cookie", re.IGNORECASE)
# scheme://user:password@ or scheme://user@; the password runs to the authority's last "@".
_URL_CREDENTIALS = re.compile(
    r"(?P<head>[a-z][a-z0-9+.-]*://)(?P<user>[^/\s:@]*)(?::(?P<password>[^/\s]*))?@", re.IGNORECASE
)
_MAX_DEPTH = 8


def mask_phone(number: str) -> str:
    """``+4915123456789`` -> ``+4915*******89``: country and carrier prefix and two last digits.

    Shorter (or invalid) numbers keep fewer digits, so nothing short enough to be guessed
    is ever shown whole.
    """
    digits = sum(ch.isdigit() for ch in number)
    head = 4 if digits >= 10 else 2 if digits >= 7 else 0
    tail = 2 if digits >= 4 else 0
    out, seen = [], 0
    for ch in number:
        if ch.isdigit():
            seen += 1
            if head < seen <= digits - tail:
                ch = "*"
        out.append(ch)
    return "".join(out)


def mask_text(text: str) -> str:
    """``text`` with every E.164-looking number in it masked."""
    return _E164_LIKE.sub(lambda m: mask_phone(m.group(0)), text) if "+" in text else text


def mask_url(text: str) -> str:
    """``text`` with the credentials of every URL in it masked: the password
    (``redis://user:***@host``), or a user part alone (``https://***@host``: often a token)."""
    if "://" not in text or "@" not in text:
        return text
    return _URL_CREDENTIALS.sub(_masked_credentials, text)


def _masked_credentials(match: re.Match[str]) -> str:
    head, user, password = match.group("head", "user", "password")
    if password:
        return f"{head}{user}:***@"
    if password is None and user:
        return f"{head}***@"
    return match.group(0)


_PLAIN = frozenset({int, float, bool, type(None)})


def _masked(value: Any, depth: int = 0) -> Any:
    if type(value) in _PLAIN:
        return value
    if isinstance(value, str):
        return mask_text(value)
    if depth >= _MAX_DEPTH:
        return value
    if isinstance(value, Mapping):
        return {k: _masked(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(v, depth + 1) for v in value]
    return value


def mask_pii(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask phone numbers in every string of the event, at any depth.

    Place it after ``format_exc_info`` so exception texts are masked too, and before the
    renderer.
    """
    for key, value in list(event_dict.items()):
        event_dict[key] = _masked(value)
    return event_dict
