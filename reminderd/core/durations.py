"""Human durations (``500ms``, ``30s``, ``5m``, ``24h``, ``7d``) to milliseconds."""

from __future__ import annotations

import math
import re

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
# ASCII digits only: ``\d`` and ``float()`` would also take "١", "1_000" and "1e3".
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII)
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)", re.ASCII)
_EXPECTED = "expected e.g. 500ms, 30s, 5m, 24h, 7d"


def parse_duration_ms(text: str | int | float) -> int:
    """Parse ``text`` into whole milliseconds; raises ``ValueError`` with what was expected.

    Compound values such as ``1h30m`` are accepted; a bare number means seconds, as in
    most ops tools. Negative, empty and non-finite durations are refused.
    """
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise ValueError(f"expected a duration such as 500ms, 30s, 5m or 24h, got {type(text).__name__}")
    if not isinstance(text, str):
        return _seconds_to_ms(text, repr(text))
    raw = text.strip().lower()
    negative = raw.startswith("-")
    ms = _parse_text(raw[1:] if negative else raw, text)
    if negative:
        raise ValueError(f"duration {text!r} must not be negative")
    return ms


def _parse_text(raw: str, text: str) -> int:
    if _NUMBER.fullmatch(raw):
        return _seconds_to_ms(float(raw), repr(text))
    pos, total = 0, 0.0
    for match in _PART.finditer(raw):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS_MS[match.group(2)]
        pos = match.end()
    if pos != len(raw) or not raw:
        raise ValueError(f"invalid duration {text!r}: {_EXPECTED}")
    return _finite_ms(total, repr(text))


def _seconds_to_ms(seconds: float, shown: str) -> int:
    if seconds < 0:
        raise ValueError(f"duration {shown} must not be negative")
    return _finite_ms(seconds * 1000, shown)


def _finite_ms(ms: float, shown: str) -> int:
    if not math.isfinite(ms):
        raise ValueError(f"duration {shown} must be a finite number")
    return round(ms)


def format_ms(ms: int) -> str:
    """Render milliseconds compactly for humans (``1h2m3s``, ``250ms``, ``1s500ms``).

    Exact, so ``parse_duration_ms(format_ms(ms)) == ms`` for any ``ms >= 0``.
    """
    if ms < 0:
        return "-" + format_ms(-ms)
    if ms == 0:
        return "0ms"
    parts: list[str] = []
    seconds, rest_ms = divmod(ms, 1000)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    if rest_ms:
        parts.append(f"{rest_ms}ms")
    return "".join(parts)
