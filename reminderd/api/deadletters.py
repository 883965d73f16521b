"""Dead letters: list, replay and purge the entries of the ``ns:dead`` stream.

A replay schedules the occurrence again as a one-shot due now (Redis's clock), keeping
its occurrence number, nominal due time, payload and the processors that had already
finished (so they do not run twice), and deletes the entry in the same script. When a
record for the key still exists (a recurring reminder that moved on, or one scheduled
again since), or a raw trigger key of that name waits to be adopted, the replay becomes an
auxiliary record beside it: the live reminder is left untouched. (The check and the
replay are two steps; a reminder scheduled for the key in between is replaced.)
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from reminderd.errors import InputError, NotFoundError
from reminderd.models import DeadLetter
from reminderd.storage.names import Names
from reminderd.storage.records import split_done
from reminderd.storage.store import ReplayRequest, Store, decode_payload

_STREAM_ID = re.compile(r"[0-9]{1,20}(?:-[0-9]{1,20})?", re.ASCII)
_PAGE = 500


@dataclass(frozen=True, slots=True)
class Replayed:
    """One replayed dead letter: its id, key and whether it became an auxiliary record."""

    id: str
    key: str
    occurrence: int
    aux: bool


def check_id(entry_id: str) -> str:
    """A stream id as typed by a user; ``InputError`` unless it looks like ``<ms>-<seq>``."""
    if not _STREAM_ID.fullmatch(entry_id):
        raise InputError(f"invalid dead-letter id {entry_id!r}: expected <ms>-<seq> such as 1700000000000-0")
    return entry_id


def _int(text: str | None, default: int = 0) -> int:
    try:
        return int(text) if text else default
    except ValueError:
        return default


def to_dead_letter(entry_id: str, fields: Mapping[str, str]) -> DeadLetter:
    """A stream entry (fields written by the scripts' ``dead_letter`` step) as a ``DeadLetter``."""
    return DeadLetter(
        id=entry_id,
        key=fields.get("key", ""),
        occurrence=_int(fields.get("occurrence"), 1),
        reason=fields.get("reason", ""),
        error=fields.get("error", ""),
        attempts=_int(fields.get("attempts")),
        processors=tuple(p for p in fields.get("processors", "").split(",") if p),
        payload=_payload(fields.get("payload", "")),
        due_at_ms=_int(fields.get("due")),
        dead_at_ms=_int(fields.get("dead_at")),
    )


def _payload(text: str) -> Mapping[str, object]:
    try:
        return decode_payload(text)
    except ValueError:
        return {"_raw": text}


def _rows(raw: Any) -> list[tuple[str, dict[str, str]]]:
    """Stream rows as typed pairs (the client decodes responses to str)."""
    return [
        (str(entry_id), {str(k): str(v) for k, v in dict(fields).items()}) for entry_id, fields in raw or []
    ]


def _id_order(entry_id: str) -> tuple[int, int]:
    """A stream entry id as numbers (ms, sequence), to order ids of several streams."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class DeadLetters:
    """The dead-letter streams of one namespace: one a shard (``storage/layout.py``); the
    entry ids of different shards' streams are their own, so each read asks every stream."""

    def __init__(self, client: aioredis.Redis, names: Names, store: Store | None = None) -> None:
        self.client = client
        self.names = names
        self.store = store or Store(client, names)
        self._streams = [n.dead for n in self.store.layout.shard_names]

    async def newest(self, limit: int = 50) -> list[DeadLetter]:
        """The newest ``limit`` dead letters, newest first."""
        if limit < 1:
            raise InputError("--limit must be at least 1")
        rows = [
            row for s in self._streams for row in _rows(await self.client.xrevrange(s, "+", "-", count=limit))
        ]
        rows.sort(key=lambda row: _id_order(row[0]), reverse=True)
        return [to_dead_letter(entry_id, fields) for entry_id, fields in rows[:limit]]

    async def count(self) -> int:
        """How many dead letters the stream holds."""
        return sum([int(await self.client.xlen(s)) for s in self._streams])

    async def entry(self, entry_id: str) -> dict[str, str]:
        """The raw fields of one entry; ``NotFoundError`` if there is none."""
        check_id(entry_id)
        for stream in self._streams:
            rows = _rows(await self.client.xrange(stream, entry_id, entry_id, count=1))
            if rows:
                return rows[0][1]
        raise NotFoundError(f"no dead letter {entry_id!r}")

    async def replay(self, entry_id: str) -> Replayed:
        """Schedule one dead letter again, due now; ``NotFoundError`` if it does not exist."""
        fields = await self.entry(entry_id)
        return await self._replay(entry_id, fields)

    async def _replay(self, entry_id: str, fields: Mapping[str, str]) -> Replayed:
        key = fields.get("key", "")
        occurrence = _int(fields.get("occurrence"), 1)
        aux = await self.store.exists(key)
        payload = fields.get("payload", "")
        now_ms = await self.store.now_ms()
        req = ReplayRequest(
            key,
            tag=f"replay:{entry_id}",
            due_at_ms=now_ms,
            nominal_ms=_int(fields.get("due"), now_ms),
            occurrence=occurrence,
            payload_json="" if payload in ("", "{}") else payload,
            done=split_done(fields.get("done", "")),
            dead_id=entry_id,
            aux=aux,
        )
        await self.store.replay(req)
        return Replayed(entry_id, key, occurrence, aux)

    async def replay_all(self) -> list[Replayed]:
        """Replay every dead letter, oldest first."""
        return [replayed async for replayed in self.replay_each()]

    async def replay_each(self) -> AsyncIterator[Replayed]:
        """Replay every dead letter, oldest first, one result at a time (for progress)."""
        async for entry_id, fields in self._entries():
            yield await self._replay(entry_id, fields)

    async def _entries(self) -> AsyncIterator[tuple[str, dict[str, str]]]:
        """Every entry, oldest first within each shard's stream, in pages (entries replayed
        meanwhile are gone already)."""
        for stream in self._streams:
            start = "-"
            while True:
                rows = _rows(await self.client.xrange(stream, start, "+", count=_PAGE))
                for row in rows:
                    yield row
                if len(rows) < _PAGE:
                    break
                start = f"({rows[-1][0]}"

    async def purge(self, entry_id: str) -> None:
        """Delete one dead letter; ``NotFoundError`` if it does not exist."""
        check_id(entry_id)
        for stream in self._streams:
            if await self.client.xdel(stream, entry_id):
                return
        raise NotFoundError(f"no dead letter {entry_id!r}")

    async def purge_all(self) -> int:
        """Delete every dead letter; how many there were."""
        count = 0
        for stream in self._streams:  # a transaction of one key each: one slot on Cluster
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.xlen(stream)
                pipe.delete(stream)
                n, _ = await pipe.execute()
            count += int(n)
        return count
