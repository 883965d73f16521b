"""Render the SMS message and gateway templates parsed by ``reminderd.config.sms``.

A template is rendered completely before anything is sent: a missing ``payload`` field
(or a value that does not fit its format spec) raises ``PermanentError`` naming the
field, so no half-rendered message ever leaves. Values are looked up by name in a plain
mapping; nothing is evaluated and no attribute of any object is reachable.

Placeholders: ``{user_id}``, ``{type}``, ``{key}``, ``{rule}``, ``{occurrence}``, ``{tz}``,
``{due_local}`` / ``{due_utc}`` (datetimes; a spec is a ``strftime`` format, default
``%Y-%m-%d %H:%M``) and ``{payload.<field>}`` (nested with more dots). Gateway
templates also get ``{to}``, ``{from}``, ``{body}``, ``{token}`` and ``{idempotency_key}``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from reminderd.config.sms import Placeholder, parse_template
from reminderd.errors import PermanentError
from reminderd.models import Occurrence

DEFAULT_DATETIME_FORMAT = "%Y-%m-%d %H:%M"
MISSING_FIELD = "template_field_missing"


class Template:
    """One parsed template; ``name`` (e.g. ``templates.daily``) appears in every error."""

    def __init__(self, name: str, source: str, fields: tuple[str, ...]) -> None:
        self.name = name
        self._pieces = parse_template(source, fields)

    def render(self, values: Mapping[str, Any], escape: Callable[[str], str] | None = None) -> str:
        """The whole text, or ``PermanentError`` naming the first field that cannot be filled."""
        out: list[str] = []
        for literal, placeholder in self._pieces:
            out.append(literal)
            if placeholder is not None:
                text = self._format(placeholder, values)
                out.append(escape(text) if escape else text)
        return "".join(out)

    def _format(self, placeholder: Placeholder, values: Mapping[str, Any]) -> str:
        value = _lookup(placeholder.path, values)
        if value is None:
            raise PermanentError(f"{self.name}: missing field {placeholder.name}", code=MISSING_FIELD)
        if isinstance(value, Mapping | list | tuple):
            raise PermanentError(
                f"{self.name}: field {placeholder.name} is not a single value", code="template_field_invalid"
            )
        spec = placeholder.spec
        if isinstance(value, datetime) and not spec:
            spec = DEFAULT_DATETIME_FORMAT
        try:
            return format(value, spec)
        except (ValueError, TypeError) as exc:
            raise PermanentError(
                f"{self.name}: field {placeholder.name} does not fit format {spec!r}",
                code="template_field_invalid",
            ) from exc


def _lookup(path: tuple[str, ...], values: Mapping[str, Any]) -> Any:
    current: Any = values
    for part in path:
        if not isinstance(current, Mapping) or part not in current:
            return None
        current = current[part]
    return current


def message_values(occ: Occurrence, zone: ZoneInfo) -> dict[str, Any]:
    """What a message template can reference for ``occ``, due time shown in ``zone``."""
    due_utc = datetime.fromtimestamp(occ.due_at_ms / 1000, UTC)
    return {
        "user_id": occ.user_id,
        "type": occ.type,
        "key": occ.key,
        "rule": occ.rule,
        "occurrence": occ.occurrence,
        "tz": zone.key,
        "due_local": due_utc.astimezone(zone),
        "due_utc": due_utc,
        "payload": occ.payload,
    }
