"""The finish path when Redis refuses the write: what is sent again, and what is not."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import RedisError

from reminderd.errors import RetryableError
from reminderd.models import Occurrence
from reminderd.pipeline.decisions import Complete
from tests.pipeline.harness import INSTANCE, Recorder, running
from tests.pipeline.test_verdicts import config
from tests.redis_server import RedisServer


class FailsUser2(Recorder):
    """Succeeds for every user but 2, whose attempts fail retryably."""

    async def __call__(self, occ: Occurrence) -> dict[str, str] | None:
        """Record ``occ``; fail it if it is user 2's."""
        self.seen.append(occ)
        if occ.user_id == "2":
            raise RetryableError("503")
        return None


async def test_a_refused_write_is_sent_again_except_for_retries(fresh_redis: RedisServer) -> None:
    """While Redis refuses writes, a completion waits and is written later; a retry gives up its lease."""
    async with running(fresh_redis.url, config(), {"rec": FailsUser2()}) as p:
        now = await p.now_ms()
        for user in (1, 2):
            await p.schedule(now - 10, key=f"send_message-{user}-x")
        claims = (await p.store.claim_due(INSTANCE, limit=10, lease_ms=30_000)).claims
        await p.redis.config_set("min-replicas-to-write", 1)  # every write now fails: NOREPLICAS
        tasks = {c.key: asyncio.create_task(p.dispatcher.occurrence(c, "sweep")) for c in claims}
        with pytest.raises(RedisError, match="NOREPLICAS"):
            await asyncio.wait_for(tasks["send_message-2-x"], 10)
        assert not tasks["send_message-1-x"].done()  # still waiting for its write
        await p.redis.config_set("min-replicas-to-write", 0)
        assert isinstance(await tasks["send_message-1-x"], Complete)
        assert await p.record("send_message-1-x") == {}
        retried = await p.record("send_message-2-x")
        assert retried.get("a", "0") == "0"  # the failed attempt was not counted (nor twice)
        assert (
            await p.redis.exists(p.names("send_message-2-x").lock("send_message-2-x")) == 1
        )  # its lease lapses
