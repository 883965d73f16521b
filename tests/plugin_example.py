"""A sample third-party processor, plus broken ones, for the plugin-loading tests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reminderd.models import Occurrence
from reminderd.processors.base import ProcessorContext


class EchoProcessor:
    """A well-formed plugin: remembers what it saw and echoes its ``reply`` option."""

    def __init__(self, name: str, options: Mapping[str, Any], ctx: ProcessorContext) -> None:
        self.name = name
        self.options = dict(options)
        self.ctx = ctx
        self.seen: list[Occurrence] = []
        self.closed = False

    async def __call__(self, occ: Occurrence) -> Mapping[str, str] | None:
        """Record the occurrence and answer with the configured reply."""
        self.seen.append(occ)
        return {"echo": str(self.options.get("reply", occ.key))}

    async def aclose(self) -> None:
        """Mark the plugin closed."""
        self.closed = True


class NoClose:
    """Broken: has ``__call__`` but no ``aclose``."""

    def __init__(self, name: str, options: Mapping[str, Any], ctx: ProcessorContext) -> None:
        self.name = name

    async def __call__(self, occ: Occurrence) -> None:
        """Do nothing."""


class SyncCall:
    """Broken: ``__call__`` is a plain method, so the pipeline could not await it."""

    def __init__(self, name: str, options: Mapping[str, Any], ctx: ProcessorContext) -> None:
        self.name = name

    def __call__(self, occ: Occurrence) -> None:
        """Do nothing."""

    async def aclose(self) -> None:
        """Do nothing."""


class Exploding:
    """Broken: the constructor rejects its options."""

    def __init__(self, name: str, options: Mapping[str, Any], ctx: ProcessorContext) -> None:
        raise ValueError(f"option 'token' is required, got {sorted(options)}")


NOT_CALLABLE = 42


class CloseRecorder:
    """Records its closing in Redis (``RPUSH closed <tag>``), so a test sees which instances closed."""

    def __init__(self, name: str, options: Mapping[str, Any], ctx: ProcessorContext) -> None:
        self.name = name
        self.tag = str(options["tag"])
        self.ctx = ctx

    async def __call__(self, occ: Occurrence) -> None:
        """Do nothing."""

    async def aclose(self) -> None:
        """Append this instance's tag to the ``closed`` list."""
        await self.ctx.redis.rpush("closed", self.tag)
