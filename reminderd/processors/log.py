"""The ``log`` processor: one structured log line per occurrence.

Useful in development and as a default rule's processor. The payload is logged only at
``level: debug``: payloads can hold personal data, and ``info`` logs are usually
shipped and kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reminderd.config.processors import LogSettings
from reminderd.models import Occurrence
from reminderd.processors.base import ProcessorContext


class LogProcessor:
    """Logs ``reminder.processed`` with the occurrence's ids at the configured level."""

    def __init__(self, name: str, settings: LogSettings, ctx: ProcessorContext) -> None:
        self.name = name
        self._level = settings.level
        self._log = ctx.log  # not bound here: binding would freeze the logging config of today

    async def __call__(self, occ: Occurrence) -> Mapping[str, str] | None:
        """Write the log line; never fails."""
        fields: dict[str, Any] = {
            "processor": self.name,
            "key": occ.key,
            "user_id": occ.user_id,
            "type": occ.type,
            "occurrence": occ.occurrence,
            "due_at_ms": occ.due_at_ms,
            "lateness_ms": occ.lateness_ms,
        }
        if self._level == "debug":
            fields["payload"] = dict(occ.payload)
        method = getattr(self._log, self._level)
        method("reminder.processed", **fields)
        return None

    async def aclose(self) -> None:
        """Nothing to release."""
