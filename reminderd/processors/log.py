"""The ``log`` processor: the occurrence's fire line is its log line.

Every fire already writes one ``reminder.fired`` line (ids, lateness, each processor's
result); a second line per fire from this processor would only repeat it, so the
processor writes none of its own. It is the processor for a rule that should only be
seen in the log (development, a default rule). At ``level: debug`` it adds the payload
to that line (as ``<name>.payload``): payloads can hold personal data, and ``info``
logs are usually shipped and kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import orjson

from reminderd.config.processors import LogSettings
from reminderd.models import Occurrence
from reminderd.processors.base import ProcessorContext


class LogProcessor:
    """Adds the payload to the fire line at ``level: debug``; otherwise nothing to do."""

    def __init__(self, name: str, settings: LogSettings, ctx: ProcessorContext) -> None:
        self.name = name
        self._with_payload = settings.level == "debug"

    async def __call__(self, occ: Occurrence) -> Mapping[str, str] | None:
        """The details the fire line carries; never fails."""
        if not self._with_payload:
            return None
        return {"payload": orjson.dumps(dict(occ.payload)).decode()}

    async def call_many(self, occs: Sequence[Occurrence]) -> list[Mapping[str, str] | None]:
        """The batch form: the same details for each occurrence, with no task or timer each."""
        if not self._with_payload:
            return [None] * len(occs)
        return [{"payload": orjson.dumps(dict(occ.payload)).decode()} for occ in occs]

    async def aclose(self) -> None:
        """Nothing to release."""
