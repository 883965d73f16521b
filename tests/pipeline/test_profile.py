"""Quiet hours and the user's profile through the in-process pipeline."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

import redis.asyncio as aioredis
import structlog
import yaml

from reminderd.config import load_config_text
from reminderd.config.sms import SmsSettings
from reminderd.pipeline.decisions import Complete, Defer
from reminderd.processors.base import HttpClient, ProcessorContext
from reminderd.processors.sms import SmsProcessor
from reminderd.storage.names import Names
from tests.pipeline.harness import KEY, Recorder, running
from tests.twilio_server import AUTH_TOKEN, TwilioServer

T = TypeVar("T")
HOUR_MS = 3_600_000
PHONE = "+4915112345678"


def sms_config(base_url: str = "http://127.0.0.1:9", **rule: Any) -> str:
    """YAML whose rule runs one SMS processor that looks its users up in ``user:{user_id}``."""
    sms = {
        "type": "sms",
        "twilio": {"base_url": base_url, "account_sid": TwilioServer().account_sid,
                   "auth_token": AUTH_TOKEN, "from": "+14155550100"},
        "recipient": {"lookup": {"key": "user:{user_id}"}},
        "templates": {"default": "Hi, your {type} reminder"},
    }  # fmt: skip
    data = {
        "namespace": "t",
        "processors": {"sms": sms},
        "rules": {"send_message": {"processors": ["sms"], **rule}},
    }
    return yaml.safe_dump(data)


def window_around(now_ms: int, offset_h: int) -> dict[str, str]:
    """Quiet hours from an hour before to an hour after ``now_ms``, on a clock ``offset_h`` ahead of UTC."""
    minute = (now_ms // 60_000 + offset_h * 60) % (24 * 60)
    start, end = (minute - 60) % 1440, (minute + 60) % 1440
    return {"start": f"{start // 60:02d}:{start % 60:02d}", "end": f"{end // 60:02d}:{end % 60:02d}"}


async def test_quiet_hours_defer_to_the_window_end_in_the_payload_zone(
    redis_url: str, aredis: aioredis.Redis
) -> None:
    """A reminder due inside the user's quiet hours is moved, unsent, to the window's end."""
    rec, now = Recorder(), await redis_now(aredis)
    cfg = sms_config(quiet_hours={**window_around(now, 9), "default_tz": "UTC"})
    async with running(redis_url, cfg, {"sms": rec}) as p:
        await p.schedule(now - 10, payload={"tz": "Asia/Tokyo"})
        [verdict] = await p.step()
        assert verdict == Defer(now // 60_000 * 60_000 + HOUR_MS, "quiet_hours")
        record = await p.record()
        assert (record["d"], record["n"], record["o"]) == (str(verdict.until_ms), str(now - 10), "1")
        assert await p.due_ms() == verdict.until_ms
        assert 0 < await p.redis.pttl(KEY) <= HOUR_MS  # the trigger key waits for the new due time
        assert rec.seen == []


async def test_quiet_hours_read_the_zone_from_the_profile(redis_url: str, aredis: aioredis.Redis) -> None:
    """With no zone in the payload, the zone in the user's lookup hash decides the quiet hours."""
    rec, now = Recorder(), await redis_now(aredis)
    async with running(redis_url, sms_config(quiet_hours=window_around(now, 9)), {"sms": rec}) as p:
        await p.redis.hset("user:42", mapping={"tz": "Asia/Tokyo"})
        await p.schedule(now - 10)
        [verdict] = await p.step()
        assert verdict == Defer(now // 60_000 * 60_000 + HOUR_MS, "quiet_hours")


async def test_the_profile_is_read_once_and_carried_to_the_processor(redis_url: str) -> None:
    """The pipeline reads the user's hash and the processor gets it on the occurrence."""
    rec = Recorder()
    async with running(redis_url, sms_config(), {"sms": rec}) as p:
        await p.redis.hset("user:42", mapping={"phone": PHONE, "tz": "Europe/Berlin", "name": "Ada"})
        await p.schedule(await p.now_ms() - 10)
        [verdict] = await p.step()
        assert isinstance(verdict, Complete)
        [occ] = rec.seen
        assert occ.profile == {"user:42": {"phone": PHONE, "tz": "Europe/Berlin"}}
        assert "profile" not in repr(occ)  # it holds phone numbers


async def test_quiet_hours_and_the_sms_processor_share_one_read_of_the_hash(
    redis_url: str, aredis: aioredis.Redis
) -> None:
    """An SMS under quiet hours, its zone and number in the lookup hash, reads that hash once in all."""
    now = await redis_now(aredis)
    with TwilioServer() as twilio:
        cfg = sms_config(twilio.base_url, quiet_hours=window_around(now, 12))  # outside the window
        settings = load_config_text(cfg).processors["sms"]
        assert isinstance(settings, SmsSettings)
        async with HttpClient(100) as http:
            ctx = ProcessorContext(aredis, http, Names("t"), structlog.get_logger())
            async with running(redis_url, cfg, {"sms": SmsProcessor("sms", settings, ctx)}) as p:
                await p.redis.hset("user:42", mapping={"phone": PHONE, "tz": "UTC"})
                await p.schedule(now - 10)
                verdicts, reads = await commands_on(aredis, "user:42", p.step())
                assert isinstance(verdicts[0], Complete)
        assert [r.split()[0] for r in reads] == ["HMGET"]
        [sent] = twilio.sent
        assert sent.form["To"] == PHONE


async def commands_on(client: aioredis.Redis, key: str, action: Awaitable[T]) -> tuple[T, list[str]]:
    """``action``'s result and the commands clients (not scripts) sent about ``key`` meanwhile."""
    async with client.monitor() as monitor:
        result = await action
        await client.echo("monitor-end")
        seen = []
        while "monitor-end" not in (info := await monitor.next_command())["command"]:
            if key in info["command"] and info.get("client_type") != "lua":
                seen.append(info["command"])
    return result, seen


async def redis_now(client: aioredis.Redis) -> int:
    """Redis's clock in epoch milliseconds."""
    sec, usec = await client.time()
    return int(sec) * 1000 + int(usec) // 1000
