"""The processor protocol and the shared resources processors receive.

A processor is anything with ``async __call__(occurrence)`` and ``aclose()``. It raises
an error from ``reminderd.errors`` to say whether a failure is worth a retry; it returns
optional details (a provider message id) that are recorded and logged with the fire.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import httpx
import redis.asyncio as aioredis

from reminderd.models import Occurrence
from reminderd.storage.names import Names


@runtime_checkable
class Processor(Protocol):
    """One business action for one occurrence."""

    async def __call__(self, occ: Occurrence) -> Mapping[str, str] | None:
        """Act on ``occ``; raise ``RetryableError``/``PermanentError``/``SkipOccurrence`` on failure."""
        ...

    async def aclose(self) -> None:
        """Release what the processor opened itself (shared resources are not its own)."""
        ...


@dataclass(frozen=True, slots=True)
class ProcessorContext:
    """Resources owned by the daemon and lent to every processor."""

    redis: aioredis.Redis
    http: httpx.AsyncClient
    names: Names
    log: Any  # a structlog BoundLogger
