"""The ``stream`` processor: XADD the occurrence to a Redis Stream.

Downstream services read the stream with consumer groups and get at-least-once
delivery of their own. ``MAXLEN ~`` bounds the stream cheaply (Redis trims whole
nodes only), so the stream holds at least ``maxlen`` entries, a little more at times.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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
            raise self._failed(exc) from exc
        result = self._result(entry_id)
        if isinstance(result, Exception):
            raise result
        return result

    async def call_many(self, occs: Sequence[Occurrence]) -> list[Mapping[str, str] | Exception]:
        """The batch form: every entry in one pipelined round trip (not a transaction).

        An entry Redis refused fails its occurrence alone; a failed round trip fails them
        all, and each is retried as a whole (an entry may then be added twice: the stream
        is at-least-once, readers dedupe on ``idempotency_key``).
        """
        pipe = self._redis.pipeline(transaction=False)
        for occ in occs:
            pipe.xadd(self._stream, stream_fields(occ), maxlen=self._maxlen, approximate=True)
        try:
            replies = await pipe.execute(raise_on_error=False)
        except RedisError as exc:
            raise self._failed(exc) from exc
        return [self._result(reply) for reply in replies]

    def _result(self, reply: object) -> Mapping[str, str] | Exception:
        if isinstance(reply, Exception):
            return self._failed(reply)
        return {"stream_id": reply.decode() if isinstance(reply, bytes) else str(reply)}

    def _failed(self, exc: Exception) -> RetryableError:
        return RetryableError(f"stream {self.name}: XADD {self._stream} failed: {type(exc).__name__}: {exc}")

    async def aclose(self) -> None:
        """Nothing to release: the Redis connection is the daemon's."""
