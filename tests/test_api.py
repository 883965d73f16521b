"""The Python API (async and sync) against a real redis-server: schedule, reschedule, get, list."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis.asyncio as aioredis

from reminderd.api import Reminders
from reminderd.api.reminders import AsyncReminders, When, resolve
from reminderd.config import load_config_text
from reminderd.core.schedules import Cron, Every, Once
from reminderd.errors import KeyNameError, NotFoundError, PayloadError, ScheduleError
from reminderd.models import Misfire, Reminder
from reminderd.storage.connection import make_client
from reminderd.storage.names import Names
from tests.redis_server import RedisServer

SETTINGS = load_config_text(
    """
namespace: api
rules:
  send_message:
    processors: [log]
  remind:
    processors: [log]
    misfire: skip
"""
)
NAMES = Names("api")
KEY = "send_message-42-daily"
HOUR_MS = 3_600_000


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client configured the way the API's users get one."""
    c = make_client(SETTINGS.redis, redis_url)
    yield c
    await c.aclose()


@pytest.fixture
def api(client: aioredis.Redis) -> AsyncReminders:
    """The asyncio API on the flushed session server."""
    return AsyncReminders(client, SETTINGS)


async def redis_now(client: aioredis.Redis) -> int:
    """Redis's clock in epoch milliseconds."""
    sec, usec = await client.time()
    return int(sec) * 1000 + int(usec) // 1000


def ms_of(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime, exactly."""
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


async def scheduled(api: AsyncReminders, key: str | None = None, **kwargs: Any) -> Reminder:
    """Schedule and return the stored reminder (never None here)."""
    rem = await api.schedule(key, **kwargs)
    assert rem is not None
    return rem


# -- schedule ---------------------------------------------------------------------------


async def test_schedule_by_key_stores_and_returns_reminder(
    api: AsyncReminders, client: aioredis.Redis
) -> None:
    """Scheduling by key writes the trigger key and returns the stored reminder with parsed parts."""
    due = await redis_now(client) + 60_000
    rem = await scheduled(api, KEY, payload={"text": "hi"}, when=When(at=due))
    assert rem == Reminder(
        key=KEY,
        rule="send_message",
        user_id="42",
        type="daily",
        payload={"text": "hi"},
        schedule=Once(due),
        due_at_ms=due,
        occurrence=1,
        attempt=0,
        misfire=Misfire.FIRE_ONCE,
    )
    assert await client.pexpiretime(KEY) == due
    assert await api.get(KEY) == rem


async def test_schedule_by_user_type_and_rule(api: AsyncReminders, client: aioredis.Redis) -> None:
    """User and type build the key under the first rule, or under the rule given."""
    due = await redis_now(client) + 60_000
    uuid = "0b8e6f5a-1c2d-4e3f-8a9b-0c1d2e3f4a5b"
    rem = await scheduled(api, user=uuid, type="daily", when=When(at=due))
    assert (rem.key, rem.rule, rem.user_id, rem.type) == (
        f"send_message-{uuid}-daily",
        "send_message",
        uuid,
        "daily",
    )
    rem = await scheduled(api, user="7", type="weekly", rule="remind", payload='{"a": 1}', when=When(at=due))
    assert (rem.key, rem.rule, rem.user_id, rem.type, rem.payload) == (
        "remind-7-weekly",
        "remind",
        "7",
        "weekly",
        {"a": 1},
    )
    assert await client.exists("remind-7-weekly")


async def test_only_if_absent_returns_none_and_keeps_the_first(
    api: AsyncReminders, client: aioredis.Redis
) -> None:
    """``only_if_absent`` refuses an existing reminder and an existing raw trigger key."""
    due = await redis_now(client) + 60_000
    await api.schedule(KEY, payload={"v": 1}, when=When(at=due))
    assert await api.schedule(KEY, payload={"v": 2}, when=When(at=due + 1), only_if_absent=True) is None
    rem = await api.get(KEY)
    assert rem is not None
    assert (rem.payload, rem.due_at_ms) == ({"v": 1}, due)
    await client.set("send_message-9-raw", "1", px=60_000)
    assert await api.schedule("send_message-9-raw", when=When(at=due), only_if_absent=True) is None
    assert await api.get("send_message-9-raw") is None


async def test_at_accepts_aware_datetimes_and_epoch_ms(api: AsyncReminders) -> None:
    """``at`` takes an aware datetime in any zone (to the millisecond) or epoch milliseconds."""
    moment = datetime(2031, 7, 1, 9, 30, 0, 1000, tzinfo=ZoneInfo("Europe/Berlin"))
    rem = await scheduled(api, KEY, when=When(at=moment))
    assert rem.due_at_ms == ms_of(moment) == 1_940_657_400_001
    rem = await scheduled(api, KEY, when=When(at=1_940_657_400_123))
    assert (rem.due_at_ms, rem.schedule, rem.occurrence) == (1_940_657_400_123, Once(1_940_657_400_123), 2)


@pytest.mark.parametrize("in_", [timedelta(minutes=5, milliseconds=1), 300_001])
async def test_in_counts_from_redis_time(
    api: AsyncReminders, client: aioredis.Redis, in_: timedelta | int
) -> None:
    """``in_`` (timedelta or ms) is a delay from Redis's clock, exact to the millisecond."""
    before = await redis_now(client)
    rem = await scheduled(api, KEY, when=When(in_=in_))
    after = await redis_now(client)
    assert before + 300_001 <= rem.due_at_ms <= after + 300_001
    assert rem.schedule == Once(rem.due_at_ms)


async def test_every_without_start_anchors_one_interval_from_now(
    api: AsyncReminders, client: aioredis.Redis
) -> None:
    """``every`` alone first fires one interval from now, anchored there."""
    before = await redis_now(client)
    rem = await scheduled(api, KEY, when=When(every=timedelta(hours=1)))
    after = await redis_now(client)
    assert before + HOUR_MS <= rem.due_at_ms <= after + HOUR_MS
    assert rem.schedule == Every(HOUR_MS, rem.due_at_ms)
    assert await client.hget(NAMES.record(KEY), "s") == f'{{"every":{HOUR_MS},"anchor":{rem.due_at_ms}}}'


async def test_every_with_start(api: AsyncReminders, client: aioredis.Redis) -> None:
    """``every`` with ``at`` or ``in_`` anchors at that start and first fires there."""
    start = await redis_now(client) + 10_000
    rem = await scheduled(api, KEY, when=When(every=60_000, at=start))
    assert (rem.schedule, rem.due_at_ms) == (Every(60_000, start), start)
    before = await redis_now(client)
    rem = await scheduled(api, KEY, when=When(every=60_000, in_=timedelta(seconds=5)))
    assert isinstance(rem.schedule, Every)
    assert rem.schedule.anchor_ms == rem.due_at_ms
    assert before + 5000 <= rem.due_at_ms <= await redis_now(client) + 5000


async def test_cron_in_a_time_zone(api: AsyncReminders, client: aioredis.Redis) -> None:
    """A cron first fires at its next match in the given zone after now."""
    zone = ZoneInfo("Europe/Berlin")
    now = await redis_now(client)
    rem = await scheduled(api, KEY, when=When(cron="0 9 * * *", tz="Europe/Berlin"))
    today = datetime.fromtimestamp(now / 1000, zone).date()
    candidates = [ms_of(datetime.combine(today + timedelta(days=d), time(9), zone)) for d in range(3)]
    assert rem.due_at_ms == min(c for c in candidates if c > now)
    assert rem.schedule == Cron("0 9 * * *", "Europe/Berlin")
    assert await client.pexpiretime(KEY) == rem.due_at_ms


async def test_cron_with_start_fires_at_or_after_it(api: AsyncReminders) -> None:
    """A cron with ``at`` fires at the first match at or after that start."""
    start = datetime(2031, 3, 1, 9, 0, tzinfo=UTC)
    rem = await scheduled(api, KEY, when=When(cron="0 9 * * *", at=start))
    assert rem.due_at_ms == ms_of(start)
    rem = await scheduled(api, KEY, when=When(cron="0 9 * * *", at=start + timedelta(milliseconds=1)))
    assert rem.due_at_ms == ms_of(start + timedelta(days=1))


@pytest.mark.parametrize(
    ("when", "message"),
    [
        (When(at=1_900_000_000_000, in_=1000), "give either at or in, not both"),
        (When(every=1000, cron="* * * * *"), "give either every or cron, not both"),
        (When(), "a schedule needs one of at, in, every or cron"),
        (When(tz="Europe/Berlin"), "a schedule needs one of at, in, every or cron"),
        (When(at=datetime(2031, 1, 1, 9, 0)), "at must be timezone-aware (e.g. datetime.now(UTC))"),
        (When(every=1000, at=datetime(2031, 1, 1)), "at must be timezone-aware (e.g. datetime.now(UTC))"),
        (When(at=-1), "time must not be before 1970-01-01T00:00:00Z"),
        (When(in_=-1), "in must not be negative"),
        (When(in_=timedelta(seconds=-1)), "in must not be negative"),
        (When(every=0), "every must be at least 1ms"),
        (When(every=timedelta(seconds=-5)), "every must be at least 1ms"),
        (
            When(cron="61 * * * *"),
            "invalid cron expression '61 * * * *': minute field '61': "
            "the last value (61) is higher than the maximum value (59)",
        ),
        (
            When(cron="* * * *"),
            "invalid cron expression '* * * *': expected 5 fields (minute hour day month weekday), got 4",
        ),
        (When(cron="0 0 30 2 *"), "invalid cron expression '0 0 30 2 *': it never matches a date"),
        (When(cron="0 9 * * *", tz="Mars/Base"), "unknown time zone 'Mars/Base'"),
    ],
)
async def test_invalid_when_is_rejected(
    api: AsyncReminders, client: aioredis.Redis, when: When, message: str
) -> None:
    """Impossible or malformed schedules raise ScheduleError with the exact message and write nothing."""
    with pytest.raises(ScheduleError) as info:
        await api.schedule(KEY, when=when)
    assert str(info.value) == message
    assert await client.dbsize() == 0


def test_resolve_is_exact_to_the_millisecond() -> None:
    """Spans and instants with odd milliseconds resolve exactly (no float rounding)."""
    assert resolve(When(in_=timedelta(seconds=1, milliseconds=1)), 1000) == (Once(2001), 2001)
    assert resolve(When(every=timedelta(seconds=1.001)), 0) == (Every(1001, 1001), 1001)
    moment = datetime(2026, 1, 1, 0, 0, 0, 1000, tzinfo=UTC)
    assert resolve(When(at=moment), 0) == (Once(1_767_225_600_001), 1_767_225_600_001)


@pytest.mark.parametrize(
    ("key", "kwargs", "message"),
    [
        ("bad", {}, "invalid key 'bad': matches no configured rule prefix"),
        (
            "send_message-42",
            {},
            "invalid key 'send_message-42': expected <prefix>-<userId>-<type>, found no type",
        ),
        ("send_message--daily", {}, "invalid key 'send_message--daily': user id is empty"),
        ("send_message-42-", {}, "invalid key 'send_message-42-': type is empty"),
        (
            "send_message- 42-daily",
            {},
            "invalid key 'send_message- 42-daily': user id has leading or trailing whitespace",
        ),
        (
            "send_message-4\n2-daily",
            {},
            "invalid key 'send_message-4\\n2-daily': user id contains a control character",
        ),
        (KEY, {"user": "42"}, "give either a key or user and type, not both"),
        (None, {"user": "42"}, "give a key, or both user and type"),
        (None, {"type": "daily"}, "give a key, or both user and type"),
        (
            None,
            {"user": "42", "type": "daily", "rule": "nope"},
            "unknown rule 'nope' (configured: send_message, remind)",
        ),
        (None, {"user": "42", "type": "a-b"}, "cannot build key: type 'a-b' must not contain '-'"),
        (None, {"user": "", "type": "daily"}, "cannot build key: user id is empty"),
        (None, {"user": "42", "type": "x\ty"}, "cannot build key: type contains a control character"),
    ],
)
async def test_bad_keys_are_rejected(
    api: AsyncReminders, client: aioredis.Redis, key: str | None, kwargs: dict[str, Any], message: str
) -> None:
    """Keys that break the key contract raise KeyNameError with the exact reason and write nothing."""
    with pytest.raises(KeyNameError) as info:
        await api.schedule(key, when=When(in_=1000), **kwargs)
    assert str(info.value) == message
    assert await client.dbsize() == 0


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([1, 2], "payload must be a JSON object, got list"),
        ("nope", "payload is not valid JSON: Expecting value: line 1 column 1 (char 0)"),
        (
            {"a": float("nan")},
            "payload is not JSON-serialisable: Out of range float values are not JSON compliant",
        ),
        ({"a": "x" * 16_380}, "payload is 16388 bytes, above the limit of 16384 bytes"),
    ],
)
async def test_bad_payloads_are_rejected(
    api: AsyncReminders, client: aioredis.Redis, payload: Any, message: str
) -> None:
    """Payloads that are not a JSON object within ``limits.payload_max_bytes`` raise PayloadError."""
    with pytest.raises(PayloadError) as info:
        await api.schedule(KEY, payload=payload, when=When(in_=1000))
    assert str(info.value) == message
    assert await client.dbsize() == 0


# -- reschedule, cancel, get ------------------------------------------------------------


async def test_reschedule_keeps_payload_unless_given(api: AsyncReminders, client: aioredis.Redis) -> None:
    """Rescheduling changes the schedule, keeps the payload unless one is given, and continues numbering."""
    now = await redis_now(client)
    await api.schedule(KEY, payload={"text": "hi"}, when=When(at=now + 60_000))
    rem = await api.reschedule(KEY, when=When(every=HOUR_MS, at=now + 120_000))
    assert (rem.payload, rem.schedule, rem.due_at_ms, rem.occurrence) == (
        {"text": "hi"},
        Every(HOUR_MS, now + 120_000),
        now + 120_000,
        2,
    )
    assert await client.pexpiretime(KEY) == now + 120_000
    rem = await api.reschedule(KEY, when=When(at=now + 30_000), payload={"text": "bye"})
    assert (rem.payload, rem.schedule, rem.occurrence) == ({"text": "bye"}, Once(now + 30_000), 3)


async def test_reschedule_keeps_misfire_as_given(api: AsyncReminders, client: aioredis.Redis) -> None:
    """An explicit misfire policy survives a reschedule, and a rule default stays a rule default."""
    await api.schedule(KEY, when=When(every=HOUR_MS), misfire=Misfire.SKIP)
    await api.schedule("remind-1-daily", when=When(every=HOUR_MS))
    assert (await api.reschedule(KEY, when=When(every=60_000))).misfire is Misfire.SKIP
    await api.reschedule("remind-1-daily", when=When(every=60_000))
    assert await client.hget(NAMES.record(KEY), "m") == "skip"
    assert await client.hget(NAMES.record("remind-1-daily"), "m") is None


async def test_reschedule_unknown_key_raises(api: AsyncReminders, client: aioredis.Redis) -> None:
    """Rescheduling a key with no reminder raises NotFoundError and creates nothing."""
    with pytest.raises(NotFoundError) as info:
        await api.reschedule("send_message-1-none", when=When(in_=1000))
    assert str(info.value) == "no reminder 'send_message-1-none'"
    assert await client.dbsize() == 0


async def test_cancel_and_get(api: AsyncReminders, client: aioredis.Redis) -> None:
    """Cancel removes a reminder (True), then reports there was none (False); get returns None."""
    await api.schedule(KEY, when=When(in_=60_000))
    assert await api.cancel(KEY) is True
    assert await api.get(KEY) is None
    assert await api.cancel(KEY) is False
    assert await client.dbsize() == 0
    with pytest.raises(KeyNameError, match=r"^invalid key 'nope': matches no configured rule prefix$"):
        await api.cancel("nope")


# -- list -------------------------------------------------------------------------------


async def test_list_orders_and_filters(api: AsyncReminders, client: aioredis.Redis) -> None:
    """List returns reminders by due time, filtered by due_before, user, type and rule, up to limit."""
    t = await redis_now(client) + 60_000
    plan = {
        "send_message-1-a": 3000,
        "send_message-2-b": 1000,
        "remind-1-a": 2000,
        "send_message-1-b": 4000,
        "remind-3-c": 5000,
    }
    for key, offset in plan.items():
        await api.schedule(key, when=When(at=t + offset))

    async def keys(**kwargs: Any) -> list[str]:
        return [rem.key for rem in await api.list(**kwargs)]

    everything = ["send_message-2-b", "remind-1-a", "send_message-1-a", "send_message-1-b", "remind-3-c"]
    assert await keys() == everything
    assert await keys(due_before=t + 3000) == everything[:3]
    assert await keys(due_before=datetime.fromtimestamp((t + 2999) / 1000, UTC)) == everything[:2]
    assert await keys(user="1") == ["remind-1-a", "send_message-1-a", "send_message-1-b"]
    assert await keys(type="a") == ["remind-1-a", "send_message-1-a"]
    assert await keys(rule="remind") == ["remind-1-a", "remind-3-c"]
    assert await keys(user="1", rule="send_message") == ["send_message-1-a", "send_message-1-b"]
    assert await keys(limit=2) == everything[:2]
    assert await keys(user="nobody") == []
    first = (await api.list(limit=1))[0]
    assert (first.rule, first.user_id, first.type, first.due_at_ms) == ("send_message", "2", "b", t + 1000)


@pytest.mark.parametrize("limit", [0, -1])
async def test_list_rejects_limit_below_one(api: AsyncReminders, limit: int) -> None:
    """A list limit below one is refused with a clear message."""
    with pytest.raises(ValueError, match=r"^limit must be at least 1$"):
        await api.list(limit=limit)


async def test_schedule_many_writes_five_thousand(api: AsyncReminders, client: aioredis.Redis) -> None:
    """schedule_many writes 5 000 reminders (record, index, trigger) and list pages through them."""
    items = [(f"send_message-{i}-bulk", {"i": i}, When(in_=60_000 + i)) for i in range(5000)]
    assert await api.schedule_many(items) == 5000
    assert await client.zcard(NAMES.due) == 5000
    assert await client.exists(*(f"send_message-{i}-bulk" for i in range(0, 5000, 97))) == 52
    rem = await api.get("send_message-4999-bulk")
    assert rem is not None
    assert rem.payload == {"i": 4999}
    assert [r.key for r in await api.list(user="4999")] == ["send_message-4999-bulk"]


async def test_schedule_many_checks_everything_before_writing(
    api: AsyncReminders, client: aioredis.Redis
) -> None:
    """One bad item in a batch raises and nothing of the batch is written."""
    items: list[tuple[str, dict[str, Any] | None, When]] = [
        ("send_message-1-ok", None, When(in_=1000)),
        ("bad", None, When(in_=1000)),
    ]
    with pytest.raises(KeyNameError, match=r"^invalid key 'bad': matches no configured rule prefix$"):
        await api.schedule_many(items)
    items[1] = ("send_message-2-ok", None, When())
    with pytest.raises(ScheduleError, match=r"^a schedule needs one of at, in, every or cron$"):
        await api.schedule_many(items)
    assert await client.dbsize() == 0


# -- sync facade ------------------------------------------------------------------------


def test_sync_reminders_round_trip(redis_url: str) -> None:
    """The synchronous facade schedules, lists, reschedules, bulk-schedules and cancels."""
    with Reminders(redis_url, SETTINGS) as rem:
        first = rem.schedule(user="42", type="daily", payload={"a": 1}, when=When(every=HOUR_MS))
        assert first is not None
        assert first.key == KEY
        assert rem.get(KEY) == first
        assert rem.schedule(KEY, when=When(in_=5000), only_if_absent=True) is None
        moved = rem.reschedule(KEY, when=When(in_=5000))
        assert (moved.payload, moved.occurrence, moved.schedule) == ({"a": 1}, 2, Once(moved.due_at_ms))
        assert rem.schedule_many([("send_message-7-x", None, When(in_=1000))]) == 1
        assert [r.key for r in rem.list()] == ["send_message-7-x", KEY]
        assert rem.cancel(KEY) is True
        assert rem.get(KEY) is None
        with pytest.raises(NotFoundError):
            rem.reschedule(KEY, when=When(in_=1000))


def test_schedule_reports_the_write_not_a_re_read(redis_server: RedisServer, redis_url: str) -> None:
    """schedule and reschedule answer from their script's write: no read of the record follows it.

    A read-back races the daemon: a one-shot due now may fire and vanish in between, and
    the caller would be told nothing was written.
    """
    commands: list[str] = []
    watcher = redis_server.client()
    monitor = watcher.monitor()

    def watch() -> None:
        for entry in monitor.listen():
            if entry.get("client_type") != "lua":  # what the scripts run inside is not a read-back
                commands.append(entry["command"])
            if entry["command"] == "ECHO monitor-done":
                return

    thread = threading.Thread(target=watch, daemon=True)
    monitor.connection.send_command("MONITOR")  # started before the writes, so none is missed
    monitor.connection.read_response()
    thread.start()
    with Reminders(redis_url, SETTINGS) as reminders:
        written = reminders.schedule(KEY, when=When(in_=HOUR_MS), payload={"a": 1})
        redis_server.client().echo("monitor-between")
        moved = reminders.reschedule(KEY, when=When(in_=2 * HOUR_MS))
    redis_server.client().echo("monitor-done")
    thread.join(10)
    watcher.close()
    assert written is not None
    assert (written.key, written.user_id, written.payload, written.occurrence) == (KEY, "42", {"a": 1}, 1)
    assert (moved.payload, moved.occurrence) == ({"a": 1}, 2)  # replacing keeps counting up
    assert moved.due_at_ms > written.due_at_ms
    split = commands.index("ECHO monitor-between")
    for call in (commands[:split], commands[split:]):
        write = next(i for i, c in enumerate(call) if c.startswith("EVALSHA"))
        assert [c for c in call[write:] if c.startswith(("HGETALL", "HGET "))] == []
