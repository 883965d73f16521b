"""The processor protocol and the shared resources processors receive.

A processor is anything with ``async __call__(occurrence)`` and ``aclose()``. It raises
an error from ``reminderd.errors`` to say whether a failure is worth a retry; it returns
optional details (a provider message id) that are recorded and logged with the fire.
A processor that sends HTTP uses ``ctx.http.request(...)`` (an ``HttpClient``), whose
wait for a connection slot does not count against the processor's timeout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import redis.asyncio as aioredis

from reminderd.models import Occurrence
from reminderd.processors.http_client import HttpAnswer, HttpClient
from reminderd.storage.names import Names

__all__ = ["BatchProcessor", "BatchResult", "HttpAnswer", "HttpClient", "Processor", "ProcessorContext"]


@runtime_checkable
class Processor(Protocol):
    """One business action for one occurrence."""

    async def __call__(self, occ: Occurrence) -> Mapping[str, str] | None:
        """Act on ``occ``; raise ``RetryableError``/``PermanentError``/``SkipOccurrence`` on failure."""
        ...

    async def aclose(self) -> None:
        """Release what the processor opened itself (shared resources are not its own)."""
        ...


BatchResult = Mapping[str, str] | None | Exception
"""One occurrence's result in a batch: its details, or the error it failed with."""


@runtime_checkable
class BatchProcessor(Processor, Protocol):
    """A processor that can also act on a whole batch of occurrences in one call.

    A burst is claimed in batches of up to ``daemon.sweep_batch``; a processor whose work
    batches well (one pipelined round trip, one buffered write) offers ``call_many`` and
    the pipeline hands it the batch under one timeout, instead of one call, one task and
    one timer per occurrence. Each occurrence still gets its own result: an exception in
    its place fails that occurrence alone, one raised by ``call_many`` fails them all.
    """

    async def call_many(self, occs: Sequence[Occurrence]) -> Sequence[BatchResult]:
        """Act on every occurrence of ``occs``; one result per occurrence, in order."""
        ...


@dataclass(frozen=True, slots=True)
class ProcessorContext:
    """Resources owned by the daemon and lent to every processor."""

    redis: aioredis.Redis
    http: HttpClient  # the daemon's one HTTP client: a connection slot per host, read-whole answers
    names: Names
    log: Any  # a structlog BoundLogger
