"""The shards of a layout as the store uses them: one ``Scripts`` each, members grouped by shard.

The store's facade (``Store``, ``RawKeys``, ``Reads``) hides the shards from the pipeline:
a call about many members is split here into one script call per shard, the calls run
concurrently (one round, whatever N), and the replies are put back in the caller's order.
With the single layout there is one group and no trigger-key I/O (``peek`` is None), so the
one-Redis path makes exactly the calls it always made.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TypeVar

import redis.asyncio as aioredis

from reminderd.storage.durability import Durability
from reminderd.storage.layout import Layout
from reminderd.storage.scripts import Scripts
from reminderd.storage.triggers import State, TriggerKeys

T = TypeVar("T")


class Shards:
    """Per-shard scripts of one layout on one client, and its trigger keys (no I/O)."""

    def __init__(self, redis: aioredis.Redis, layout: Layout, durability: Durability | None = None) -> None:
        self.layout = layout
        self.inline = layout.inline_triggers
        self.scripts = tuple(Scripts(redis, n, durability, inline=self.inline) for n in layout.shard_names)
        self.triggers = TriggerKeys(redis)

    def of(self, member: str) -> Scripts:
        """The scripts of ``member``'s shard."""
        return self.scripts[self.layout.shard_of(member)]

    def group(self, members: Sequence[str]) -> dict[int, list[int]]:
        """Positions in ``members`` by shard, each group in the caller's order."""
        if len(self.scripts) == 1:
            return {0: list(range(len(members)))}
        groups: dict[int, list[int]] = {}
        for i, member in enumerate(members):
            groups.setdefault(self.layout.shard_of(member), []).append(i)
        return groups

    async def each(
        self, members: Sequence[str], step: Callable[[Scripts, list[int]], Awaitable[T]]
    ) -> list[tuple[list[int], T]]:
        """``step`` once per shard holding some of ``members`` (their positions), concurrently."""
        groups = self.group(members)
        if len(groups) == 1:  # the single layout always: no task, no gather
            ((shard, idx),) = groups.items()
            return [(idx, await step(self.scripts[shard], idx))]
        replies = await asyncio.gather(*(step(self.scripts[s], idx) for s, idx in groups.items()))
        return list(zip(groups.values(), replies, strict=True))

    async def peek(self, keys: Iterable[str], *, values: bool = False) -> dict[str, State] | None:
        """What the scripts must know of trigger keys, read on their nodes; None inline (the
        scripts read the keys themselves)."""
        if self.inline:
            return None
        return await self.triggers.peek(keys, values=values)
