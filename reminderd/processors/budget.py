"""The processor's timeout, as the pipeline applies it, minus the time spent waiting for a turn.

The pipeline runs each processor inside ``budget(timeout_s)``; a processor (or the shared
HTTP client) waiting for a shared resource that is not yet its own (a connection slot)
does so inside ``not_counted()``: the deadline is suspended while it waits and resumes
with what was left. So the daemon's own queueing never turns into a timeout, and a
timeout never into a re-send of a request that was never sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar

_current: ContextVar[asyncio.Timeout | None] = ContextVar("reminderd_processor_budget", default=None)


@asynccontextmanager
async def budget(timeout_s: float) -> AsyncIterator[None]:
    """Run the block under ``timeout_s`` (``TimeoutError`` when it is spent), pausable inside."""
    async with asyncio.timeout(timeout_s) as scope:
        token = _current.set(scope)
        try:
            yield
        finally:
            _current.reset(token)


@asynccontextmanager
async def not_counted() -> AsyncIterator[None]:
    """Time spent in the block does not count against the enclosing ``budget`` (if any)."""
    scope = _current.get()
    deadline = None if scope is None or scope.expired() else scope.when()
    if scope is None or deadline is None:
        yield
        return
    loop = asyncio.get_running_loop()
    left_s = deadline - loop.time()
    scope.reschedule(None)
    try:
        yield
    finally:
        if not scope.expired():
            scope.reschedule(loop.time() + left_s)
