"""The processor's timeout, as the pipeline applies it, minus the time spent waiting for a turn.

The pipeline runs each processor inside ``budget(timeout_s)``; a processor (or the shared
HTTP client) waiting for a shared resource that is not yet its own (a connection slot)
does so inside ``not_counted()``: the deadline is suspended while it waits and resumes
with what was left. So the daemon's own queueing never turns into a timeout, and a
timeout never into a re-send of a request that was never sent.

``budget`` is a plain class, not a generator context manager: it wraps every processor
call, and a generator's frame costs more than the timeout it carries.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar, Token
from types import TracebackType

_current: ContextVar[asyncio.Timeout | None] = ContextVar("reminderd_processor_budget", default=None)


class budget:  # lower case: used like the function it replaced, ``async with budget(5.0)``
    """Run the block under ``timeout_s`` (``TimeoutError`` when it is spent), pausable inside."""

    __slots__ = ("_scope", "_token")

    def __init__(self, timeout_s: float) -> None:
        self._scope = asyncio.timeout(timeout_s)
        self._token: Token[asyncio.Timeout | None] | None = None

    async def __aenter__(self) -> None:
        await self._scope.__aenter__()
        self._token = _current.set(self._scope)

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._token is not None:
            _current.reset(self._token)
        await self._scope.__aexit__(kind, exc, tb)


def left_s() -> float | None:
    """Seconds left in the enclosing ``budget`` (None outside one, or while it is paused)."""
    scope = _current.get()
    when = None if scope is None else scope.when()
    return None if when is None else when - asyncio.get_running_loop().time()


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
