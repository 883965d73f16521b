"""Which data set a Redis holds: a token written into it, so a wiped one is told from a busy one.

After a restart (a new ``run_id``) an empty index is a weak sign: a producer may already
have written into the new, empty server, and its writes hide that everything before is
gone. The epoch token is written only by daemons, once per data set (``SET NX``), and
survives what the data survives (AOF, RDB, a replica's copy), so a server whose token is
missing after a restart has lost its data, however busy it already is. The loss is noted
in Redis (``ns:data_lost``) so that ``status`` can show it. Each shard of a layout has its
own token (``Names.epoch``), so losing one Cluster node's data is told too.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import redis.asyncio as aioredis

from reminderd.storage.layout import Layout
from reminderd.storage.names import Names

NOTE_TTL_MS = 7 * 24 * 3600 * 1000  # how long status shows a detected loss


async def mark(client: aioredis.Redis, names: Names) -> bool:
    """Write this data set's token unless it has one; True if it had one already."""
    return not await client.set(names.epoch, secrets.token_hex(8), nx=True)


async def mark_shards(client: aioredis.Redis, layout: Layout) -> bool:
    """``mark`` for every shard of ``layout`` (one command for the single layout); True if
    every shard had its token already."""
    return all([await mark(client, names) for names in layout.shard_names])


async def note_loss(client: aioredis.Redis, names: Names, at_ms: int, run_id: str) -> None:
    """Record that the data set was found new at ``at_ms`` (Redis's clock) on server ``run_id``."""
    body = json.dumps({"at_ms": at_ms, "run_id": run_id})
    await client.set(names.data_lost, body, px=NOTE_TTL_MS)


async def last_loss(client: aioredis.Redis, names: Names) -> dict[str, Any] | None:
    """The last recorded loss (``at_ms``, ``run_id``), if one is recent enough to show."""
    raw = await client.get(names.data_lost)
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
