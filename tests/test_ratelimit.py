"""The shared token bucket against a real Redis: burst, reservations, limits, two clients."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis
import structlog

from reminderd.config.sms import SmsSettings
from reminderd.errors import RetryableError
from reminderd.models import Occurrence
from reminderd.processors.base import HttpClient, ProcessorContext
from reminderd.processors.sms import SmsProcessor
from reminderd.storage.names import Names
from reminderd.storage.ratelimit import TokenBucket
from tests.twilio_server import TwilioServer

NAMES = Names("t")


async def test_burst_is_free_then_each_token_waits_its_share(aredis: aioredis.Redis) -> None:
    """A full bucket gives ``burst`` tokens at once; the next ones are reserved 1/rate apart."""
    bucket = TokenBucket(aredis, NAMES)
    waits = [await bucket.acquire("acct", 10, 3) for _ in range(5)]
    assert waits[:3] == [0, 0, 0]
    assert 90 <= waits[3] <= 100
    assert 190 <= waits[4] <= 200


async def test_bucket_state_lives_under_the_namespace_and_expires(aredis: aioredis.Redis) -> None:
    """The state hash is ``Names.rate(bucket)`` and expires once the bucket would be full again."""
    await TokenBucket(aredis, NAMES).acquire("acct", 10, 5)
    state = await aredis.hgetall(NAMES.rate("acct"))
    assert set(state) == {b"tokens", b"ts_ms"}
    assert float(state[b"tokens"]) == 4.0
    assert 1000 < await aredis.pttl(NAMES.rate("acct")) <= 1100


async def test_a_wait_beyond_max_wait_reserves_nothing(aredis: aioredis.Redis) -> None:
    """Above max_wait the call reports the wait but takes no token, so the queue does not grow."""
    bucket = TokenBucket(aredis, NAMES)
    assert await bucket.acquire("acct", 1, 1, max_wait_ms=50) == 0
    first = await bucket.acquire("acct", 1, 1, max_wait_ms=50)
    second = await bucket.acquire("acct", 1, 1, max_wait_ms=50)
    assert 900 <= second <= first <= 1000
    assert float(await aredis.hget(NAMES.rate("acct"), "tokens") or 0) == pytest.approx(0, abs=0.01)


async def test_take_raises_retryable_with_retry_after_when_the_queue_is_too_long(
    aredis: aioredis.Redis,
) -> None:
    """take() hands the work back (RetryableError with retry_after_s) instead of waiting long."""
    bucket = TokenBucket(aredis, NAMES)
    await bucket.take("acct", 2, 1, max_wait_ms=10)
    with pytest.raises(RetryableError, match=r"^rate limit 'acct': next free slot in \d+ ms$") as info:
        await bucket.take("acct", 2, 1, max_wait_ms=10)
    assert info.value.retry_after_s is not None
    assert 0.4 < info.value.retry_after_s <= 0.5


async def test_waiting_for_a_token_does_not_block_other_coroutines(aredis: aioredis.Redis) -> None:
    """While one coroutine waits for its token, others on the loop keep running."""
    bucket = TokenBucket(aredis, NAMES)
    await bucket.take("acct", 4, 1, max_wait_ms=1000)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    started = time.monotonic()
    waited_ms = await bucket.take("acct", 4, 1, max_wait_ms=1000)
    elapsed_s = time.monotonic() - started
    task.cancel()
    assert 200 <= waited_ms <= 250
    assert elapsed_s >= 0.2
    assert ticks >= 10


async def test_buckets_are_independent(aredis: aioredis.Redis) -> None:
    """Two accounts do not share tokens."""
    bucket = TokenBucket(aredis, NAMES)
    assert await bucket.acquire("a", 1, 1) == 0
    assert await bucket.acquire("b", 1, 1) == 0
    assert await bucket.acquire("a", 1, 1) > 0


@pytest.mark.slow
async def test_two_clients_share_one_rate(redis_url: str) -> None:
    """Two daemons (two connections) hammering one bucket for ~3 s together send within 10 % of the rate."""
    rate_per_s, run_s = 20.0, 3.0
    sent: list[float] = []

    async def daemon() -> None:
        client = aioredis.Redis.from_url(redis_url)
        bucket = TokenBucket(client, NAMES)
        try:
            while time.monotonic() < deadline:
                await bucket.take("shared", rate_per_s, 1, max_wait_ms=5000)
                sent.append(time.monotonic())
        finally:
            await client.aclose()

    deadline = time.monotonic() + run_s
    await asyncio.gather(daemon(), daemon())
    sent.sort()
    measured = (len(sent) - 1) / (sent[-1] - sent[0])
    assert abs(measured - rate_per_s) / rate_per_s < 0.10, f"measured {measured:.2f}/s from {len(sent)} sends"


@pytest.mark.slow
async def test_sms_burst_from_two_daemons_reaches_twilio_at_the_configured_rate(redis_url: str) -> None:
    """60 due reminders split over two daemons arrive at Twilio at 20/s, every one accepted."""
    rate_per_s, count = 20.0, 60
    with TwilioServer() as twilio:
        settings = SmsSettings.model_validate(
            {
                "type": "sms",
                "twilio": {"base_url": twilio.base_url, "account_sid": twilio.account_sid,
                           "auth_token": twilio.auth_token, "from": "+14155550100"},
                "templates": {"default": "Reminder {occurrence}"},
                "rate_limit": {"per_second": rate_per_s, "burst": 1, "max_wait": "10s"},
            }
        )  # fmt: skip

        async def daemon(first: int) -> None:
            client = aioredis.Redis.from_url(redis_url)
            async with HttpClient(100) as http:
                ctx = ProcessorContext(redis=client, http=http, names=NAMES, log=structlog.get_logger())
                proc = SmsProcessor("sms", settings, ctx)
                await asyncio.gather(*(proc(occurrence(n)) for n in range(first, count, 2)))
            await client.aclose()

        await asyncio.gather(daemon(0), daemon(1))
        arrivals = sorted(r.arrived_mono_s for r in twilio.requests)
        assert [r.status for r in twilio.requests] == [201] * count
    measured = (count - 1) / (arrivals[-1] - arrivals[0])
    assert abs(measured - rate_per_s) / rate_per_s < 0.10, f"measured {measured:.2f}/s"


def occurrence(n: int) -> Occurrence:
    """Occurrence ``n`` of user 42's daily reminder."""
    return Occurrence(
        key="send_message-42-daily", rule="send_message", user_id="42", type="daily",
        payload={"phone": "+4915112345678"}, due_at_ms=0, fired_at_ms=0, occurrence=n, attempt=1,
    )  # fmt: skip
