"""Claims across shards, and the trigger-key side of a claim on a Cluster layout.

One shard (the single layout): a claim is one script call, exactly as it always was. N
shards: ``claim_due`` asks every shard for its share of the limit in one concurrent round
(members spread over the shards by hash, so a burst does too), then what is left of the
limit from the shards that filled their share (and any not asked yet: a limit below N),
until the limit is reached or no shard may hold more; ``claim_keys`` asks each shard for
its members. Claims across shards are not ordered by due time: each shard's are.

Not inline, a claim's scripts leave the trigger keys alone, and ``settle`` finishes the
claim on the keys' own nodes: a claimed reminder's key is deleted only if its expiry is
still the claimed due time (a key its producer re-set meanwhile is a new reminder, never
deleted), and a raw reminder claimed from the index is kept only once its key is gone:
one found alive is given back (``release.lua``: re-indexed at the key's expiry, or withdrawn
when it has none), as ``prelude.lua``'s ``raw_gone`` does inside the claim on one Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Sequence

from redis.exceptions import RedisClusterException, RedisError

from reminderd.storage.records import Claim, Claimed, Note, parse_claims
from reminderd.storage.scripts import Scripts
from reminderd.storage.shards import Shards

_rotation = itertools.count()  # where the remainder of a divided limit goes this time
_UNREACHABLE = (RedisError, RedisClusterException, OSError)  # a node down, or a failover under way


def shares(limit: int, shards: int) -> list[int]:
    """``limit`` divided over ``shards``: the remainder to a rotating few, none above it."""
    base, extra = divmod(limit, shards)
    start = next(_rotation) % shards
    return [base + (1 if (i - start) % shards < extra else 0) for i in range(shards)]


def merge(replies: Sequence[Claimed]) -> Claimed:
    """One reply of many shards: the latest clock, every claim and every note."""
    return Claimed(
        max(r.now_ms for r in replies),
        [c for r in replies for c in r.claims],
        tuple(n for r in replies for n in r.notes),
    )


async def claim_due(shards: Shards, instance: str, limit: int, lease_ms: int) -> Claimed:
    """Claim up to ``limit`` due occurrences over every shard (one concurrent round)."""
    if shards.inline:  # the single layout: one call, as it always was
        return parse_claims(await shards.scripts[0]("claim_due", instance=instance, args=[limit, lease_ms]))

    async def one(run: Scripts, share: int) -> Claimed:
        reply, _ = await run.call("claim_due", instance=instance, args=[share, lease_ms])
        return await settle(shards, run, instance, parse_claims(reply), check_raw=True)

    if len(shards.scripts) == 1:
        return await one(shards.scripts[0], limit)
    got: list[Claimed] = []
    left, live = limit, list(range(len(shards.scripts)))  # the shards that may hold more
    while left > 0 and live:
        plan = list(zip(live, shares(left, len(live)), strict=True))
        asked = [(i, n) for i, n in plan if n]
        replies = answered(
            await asyncio.gather(*(one(shards.scripts[i], n) for i, n in asked), return_exceptions=True)
        )
        got += [r for r in replies if r is not None]
        left -= sum(len(r.claims) for r in replies if r is not None)
        full = {i for (i, n), r in zip(asked, replies, strict=True) if r is not None and len(r.claims) >= n}
        live = [i for i, n in plan if i in full or not n]  # full shares, and those not asked yet
    return merge(got) if got else Claimed(0, [])


def answered(replies: Sequence[Claimed | BaseException]) -> list[Claimed | None]:
    """The shards' replies, None where a shard's node could not be reached: the claims of the
    shards that answered go on (a sweep must not drop them with a failed neighbour, leased
    for nothing), and the unreachable shards wait for their failover. When no shard answered
    the first error is the caller's, as is any error that is not about reaching a node."""
    errors = [r for r in replies if isinstance(r, BaseException)]
    for exc in errors:
        if not isinstance(exc, _UNREACHABLE):
            raise exc
    if errors and len(errors) == len(replies):
        raise errors[0]
    return [None if isinstance(r, BaseException) else r for r in replies]


async def claim_keys(shards: Shards, instance: str, members: Sequence[str], args: list[str | int]) -> Claimed:
    """Claim ``members`` (expired events) with the claim_keys arguments ``args`` before them."""
    if shards.inline:
        return parse_claims(await shards.scripts[0]("claim_keys", instance=instance, args=[*args, *members]))
    outside = await shards.peek(members, values=True)

    async def one(run: Scripts, idx: list[int]) -> Claimed:
        mine = [members[i] for i in idx]
        state = None if outside is None else {m: outside[m] for m in mine}
        reply, _ = await run.call("claim_keys", instance=instance, args=[*args, *mine], outside=state)
        claimed = await settle(shards, run, instance, parse_claims(reply), check_raw=False)
        if outside is not None:  # oversized raw values were dead-lettered: their keys go now
            big = [(m, int(outside[m][0])) for m, note in claimed.notes if note is Note.OVERSIZED]
            await shards.triggers.delete_if(big)
        return claimed

    if not members:
        return await one(shards.scripts[0], [])
    return merge([reply for _, reply in await shards.each(members, one)])


async def settle(shards: Shards, run: Scripts, instance: str, got: Claimed, *, check_raw: bool) -> Claimed:
    """Not inline: delete the claimed keys still at their claimed due time, and give back raw
    claims whose key is alive (``check_raw``: claims from the index, whose keys no one read)."""
    if shards.inline or not got.claims:
        return got
    plain = [(c.key, c.due_at_ms) for c in got.claims if not c.raw and c.key == c.member]
    # A key on a node that is down stays: it expires, and the finish's fired marker answers its event.
    with contextlib.suppress(*_UNREACHABLE):
        await shards.triggers.delete_if(plain)
    raw = [c for c in got.claims if c.raw] if check_raw else []
    if not raw:
        return got
    try:
        state = await shards.triggers.peek(c.key for c in raw)
    except _UNREACHABLE:  # not known to be gone: not fired now, claimed again when the lease lapses
        return Claimed(got.now_ms, [c for c in got.claims if not c.raw], got.notes)
    alive = {c.member for c in raw if int(state[c.key][0]) != -2}
    if not alive:
        return got
    back: list[str | int] = []
    for c in raw:
        if c.member in alive:
            back += [c.member, c.occurrence]
    reply, _ = await run.call("release", instance=instance, args=back, outside=state)
    notes = tuple((str(reply[i]), Note(reply[i + 1])) for i in range(0, len(reply), 2))
    kept: list[Claim] = [c for c in got.claims if c.member not in alive]
    return Claimed(got.now_ms, kept, got.notes + notes)
