"""The trigger key contract: ``<prefix>-<userId>-<type>``.

The type is the text after the last ``-``; the user id is everything between the rule
prefix and that last ``-`` (so UUIDs work). Prefixes may themselves contain ``-``; the
longest configured prefix that matches wins. Parsing never raises: a bad name yields a
``Rejection`` that says why, so the daemon can log and count it and go on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from reminderd.errors import KeyNameError

MAX_KEY_BYTES = 1024  # far above any real key; keeps logs and Redis memory bounded
# C0, DEL and C1: control characters break log lines and terminals.
_FORBIDDEN = frozenset(chr(c) for c in (*range(0x20), *range(0x7F, 0xA0)))


@dataclass(frozen=True, slots=True)
class TriggerKey:
    """A parsed trigger key."""

    rule: str
    user_id: str
    type: str

    @property
    def name(self) -> str:
        """The Redis key name."""
        return format_key(self.rule, self.user_id, self.type)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a name is not a trigger key of any configured rule."""

    name: str
    reason: str

    def error(self) -> KeyNameError:
        """The rejection as an exception, for entry points that must refuse the input."""
        return KeyNameError(f"invalid key {self.name!r}: {self.reason}")


def _check_part(part: str, what: str) -> str | None:
    if not part:
        return f"{what} is empty"
    if not part.strip("-"):
        return f"{what} contains only '-'"
    if part != part.strip():
        return f"{what} has leading or trailing whitespace"
    if part.isascii() and part.isprintable():
        return None  # the common case: no control character, valid UTF-8, one C-level check
    if any(ch in _FORBIDDEN for ch in part):
        return f"{what} contains a control character"
    if not _is_utf8(part):
        return f"{what} is not valid UTF-8"
    return None


def _is_utf8(text: str) -> bool:
    """False for lone surrogates, which Redis (and ``str.encode``) cannot carry."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def prefix_problem(prefix: str) -> str | None:
    """Why ``prefix`` cannot be a rule prefix (``None`` if it can); used by the config."""
    return _check_part(prefix, "prefix")


def format_key(rule: str, user_id: str, type_: str) -> str:
    """Build a trigger key; raises ``KeyNameError`` if the parts cannot round-trip."""
    for part, what in ((rule, "prefix"), (user_id, "user id"), (type_, "type")):
        problem = _check_part(part, what)
        if problem:
            raise KeyNameError(f"cannot build key: {problem}")
    if "-" in type_:
        raise KeyNameError(f"cannot build key: type {type_!r} must not contain '-'")
    name = f"{rule}-{user_id}-{type_}"
    if len(name.encode()) > MAX_KEY_BYTES:
        raise KeyNameError(f"cannot build key: longer than {MAX_KEY_BYTES} bytes")
    return name


def parse_key(name: str | bytes, prefixes: Iterable[str]) -> TriggerKey | Rejection:
    """Parse ``name`` against the configured rule prefixes; never raises."""
    if isinstance(name, bytes):
        try:
            name = name.decode("utf-8")
        except UnicodeDecodeError:
            return Rejection(repr(name[:80]), "not valid UTF-8")
    shown = name if len(name) <= 200 else name[:200] + "..."
    if len(name.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        return Rejection(shown, f"longer than {MAX_KEY_BYTES} bytes")
    if not _is_utf8(name):
        return Rejection(shown, "not valid UTF-8")
    for prefix in sorted(prefixes, key=len, reverse=True):
        if name.startswith(prefix + "-"):
            return _split(name, shown, prefix)
    return Rejection(shown, "matches no configured rule prefix")


def _split(name: str, shown: str, prefix: str) -> TriggerKey | Rejection:
    rest = name[len(prefix) + 1 :]
    user_id, sep, type_ = rest.rpartition("-")
    if not sep:
        return Rejection(shown, "expected <prefix>-<userId>-<type>, found no type")
    for part, what in ((user_id, "user id"), (type_, "type")):
        problem = _check_part(part, what)
        if problem:
            return Rejection(shown, problem)
    return TriggerKey(rule=prefix, user_id=user_id, type=type_)
