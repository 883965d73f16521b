"""The ``stream`` processor: XADD the occurrence to a Redis Stream.

Downstream services read the stream with consumer groups and get at-least-once
delivery of their own. ``MAXLEN ~`` bounds the stream cheaply (Redis trims whole
nodes only), so the stream holds at least ``maxlen`` entries, a little more at times.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from redis.exceptions import RedisError
from redis.typing import EncodableT, FieldT

from reminderd.config.processors import StreamSettings
from reminderd.errors import RetryableError
from reminderd.models import Occurrence
from reminderd.processors.base import ProcessorContext


def stream_fields(occ: Occurrence) -> dict[FieldT, EncodableT]:
    """The entry's fields: the occurrence flattened to strings, the payload as JSON."""
    return {
        "key": occ.key,
        "rule": occ.rule,
        "user_id": occ.user_id,
        "type": occ.type,
        "occurrence": str(occ.occurrence),
        "due_at_ms": str(occ.due_at_ms),
        "fired_at_ms": str(occ.fired_at_ms),
        "attempt": str(occ.attempt),
        "idempotency_key": occ.idempotency_key,
        "payload": orjson.dumps(dict(occ.payload)).decode(),
    }


class StreamProcessor:
    """Appends one entry per occurrence to the configured stream on the storage Redis."""

    def __init__(self, name: str, settings: StreamSettings, ctx: ProcessorContext) -> None:
        self.name = name
        self._stream = settings.stream
        self._maxlen = settings.maxlen
        self._redis = ctx.redis

    async def __call__(self, occ: Occurrence) -> Mapping[str, str] | None:
        """XADD the entry; return ``{"stream_id": id}``. Redis errors are retryable."""
        fields = stream_fields(occ)
        try:
            entry_id = await self._redis.xadd(self._stream, fields, maxlen=self._maxlen, approximate=True)
        except RedisError as exc:
            raise RetryableError(
                f"stream {self.name}: XADD {self._stream} failed: {type(exc).__name__}: {exc}"
            ) from exc
        if isinstance(entry_id, bytes):
            entry_id = entry_id.decode()
        return {"stream_id": str(entry_id)}

    async def aclose(self) -> None:
        """Nothing to release: the Redis connection is the daemon's."""
