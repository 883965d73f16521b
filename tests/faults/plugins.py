"""A third-party processor for the fault suite, loaded by the daemon by dotted path."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reminderd.models import Occurrence
from reminderd.processors.base import ProcessorContext


class Raising:
    """Raises a plain ``RuntimeError`` for occurrences whose payload asks for it; else succeeds."""

    def __init__(self, name: str, options: Mapping[str, Any], ctx: ProcessorContext) -> None:
        self.name = name

    async def __call__(self, occ: Occurrence) -> Mapping[str, str] | None:
        """Fail like a buggy plugin would: with an exception outside reminderd's error tree."""
        if occ.payload.get("explode"):
            raise RuntimeError(f"boom on attempt {occ.attempt}")
        return {"plugin": "ok"}

    async def aclose(self) -> None:
        """Nothing to release."""
