"""The script convention and the storage rules every script obeys, against a real redis-server."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path

import redis.asyncio as aioredis
from redis.asyncio.client import Monitor

from reminderd.core.schedules import Every
from reminderd.storage.records import AUX_SEP, RecordField
from reminderd.storage.scripts import prelude, source
from reminderd.storage.store import (
    Adoption,
    Completion,
    DeadLetterRequest,
    Deferral,
    DisarmCursor,
    Retry,
    Store,
)
from tests import test_store
from tests.test_store import (
    KEY,
    NAMES,
    WINDOW_MS,
    claim_one,
    dead_letters,
    due_claimed,
    fail,
    redis_now,
    replay_of,
    req,
    wait_past,
)

store = test_store.store
SCRIPTS = Path(str(resources.files("reminderd.storage.scripts")))
SINGLE_REMINDER = ("schedule", "cancel", "mark_done")


# -- the convention ---------------------------------------------------------------------


async def test_prelude_builds_the_python_names(r: aioredis.Redis) -> None:
    """The prelude's key builders, wake channel and field table are the ones of Names and RecordField."""
    body = "return {record_key('m'), lock_key('m'), fired_key('m'), aux_key('m'), WAKE, F.due, F.done}"
    got = await r.eval(prelude() + body, 0, NAMES.namespace, "")  # type: ignore[misc]
    expected = [NAMES.record("m"), NAMES.lock("m"), NAMES.fired("m"), NAMES.aux("m"), NAMES.wake]
    assert got == [*expected, RecordField.DUE.value, RecordField.DONE.value]


def test_only_the_prelude_spells_names_clock_and_ownership() -> None:
    """No script but the prelude spells a key name, reads TIME, builds a lock value or a field letter."""
    scripts = [p for p in SCRIPTS.glob("*.lua") if p.name != "prelude.lua"]
    assert {p.stem for p in scripts} >= {"claim_due", "claim_keys", "finish", *SINGLE_REMINDER}
    for path in scripts:
        body = path.read_text()
        assert "'TIME'" not in body, path.name
        assert not re.search(r"'[a-z_]*:[a-z_:]*'", body), path.name  # ':r:', 'ns:lock:' ...
        assert "'|'" not in body, path.name
        assert not re.search(r"'[a-z]'", body), path.name  # a record field letter
        assert not re.search(r"ARGV\[[12]\]", body), path.name  # namespace, instance: the prelude's


def test_single_reminder_scripts_reach_keys_only_through_keys() -> None:
    """Scripts about one reminder reach its keys through KEYS (the prelude's ONE), never a builder."""
    for name in SINGLE_REMINDER:
        body = (SCRIPTS / f"{name}.lua").read_text()
        assert not re.search(r"\b(record_key|lock_key|fired_key|aux_key|keys_of)\(", body), name


_MONITOR_LINE = re.compile(r"^[0-9.]+ \[\d+ (\S+)\] (.*)$")
_NO_KEY = {"publish", "time"}


async def undeclared_keys(redis_url: str, action: Callable[[], Awaitable[object]]) -> list[str]:
    """Keys that single-reminder scripts run by ``action`` touched without declaring them.

    Read from MONITOR, where a script's own commands carry the client ``lua`` and follow the
    EVALSHA that declared its keys. Keys compare in MONITOR's escaped form.
    """
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    marker = "end-of-action"
    shas = {hashlib.sha1(source(name).encode()).hexdigest() for name in SINGLE_REMINDER}
    found: list[str] = []
    single = False
    try:
        async with client.monitor() as monitor:
            assert monitor.connection is not None
            await action()
            await client.execute_command("ECHO", marker)
            declared: set[str] = set()
            while True:
                line = _MONITOR_LINE.match(str(await monitor.connection.read_response()))
                assert line is not None
                who, parts = line[1], Monitor.command_re.findall(line[2])
                command = parts[0].lower()
                if command == "echo" and parts[1:] == [marker]:
                    return found
                if command == "evalsha":
                    single = parts[1] in shas
                    declared = set(parts[3 : 3 + int(parts[2])])
                elif who == "lua" and single and command not in _NO_KEY:
                    keys = parts[1:] if command == "del" else parts[1:2]
                    found += [k for k in keys if k not in declared]
    finally:
        await client.aclose()


async def test_single_reminder_scripts_declare_every_key_they_touch(
    store: Store, r: aioredis.Redis, redis_url: str
) -> None:
    """Schedule, replace, replay beside a live reminder, mark done and cancel touch only declared KEYS."""
    now = await redis_now(r)
    entry_id, dead = await test_store._dead_letter(store, r, Every(60_000, now - 50), now - 50)

    async def single_reminder_calls() -> None:
        await store.schedule(req("send_message-7-x", now + 60_000))
        await store.schedule(req("send_message-7-x", now + 70_000))
        await store.replay(replay_of(entry_id, dead, now, aux=True))
        claim = await claim_one(store)
        await store.mark_done("A", claim, "sms")
        await store.cancel(KEY)
        await store.cancel("send_message-7-x")

    assert await undeclared_keys(redis_url, single_reminder_calls) == []


# -- the trigger-key rule ---------------------------------------------------------------


async def assert_trigger_rule(r: aioredis.Redis, key: str) -> None:
    """The rule of the prelude: a trigger key expiring at ``d`` exactly while ``d`` is ahead and unclaimed."""
    due = await r.hget(NAMES.record(key), RecordField.DUE)
    if due is None and not await r.exists(NAMES.record(key)):
        score = await r.zscore(NAMES.due, key)  # a record-less plain one-shot: due at its score
        due = None if score is None else str(int(score))
    armed = due is not None and int(due) > await redis_now(r) and not await r.exists(NAMES.lock(key))
    if armed:
        assert await r.pexpiretime(key) == int(due)  # type: ignore[arg-type]
    else:
        assert not await r.exists(key)


async def test_every_state_change_keeps_the_trigger_key_rule(store: Store, r: aioredis.Redis) -> None:
    """Schedule, claim, retry, deferral, re-arm, dead letter and completion all leave the rule true."""
    now = await redis_now(r)
    await store.schedule(req(KEY, now + 60_000))
    await assert_trigger_rule(r, KEY)
    claim = await due_claimed(store, KEY, now - 10, schedule=Every(60_000, now - 10))
    await assert_trigger_rule(r, KEY)
    assert await fail(store, "A", Retry(KEY, claim.occurrence, now + 30_000, "boom")) == 1
    await assert_trigger_rule(r, KEY)
    await r.hset(NAMES.record(KEY), RecordField.DUE, now - 5)
    await r.zadd(NAMES.due, {KEY: now - 5})
    claim = await claim_one(store)
    assert await store.defer("A", claim, now + 40_000)
    await assert_trigger_rule(r, KEY)
    await r.zadd(NAMES.due, {KEY: now - 5})
    await r.hset(NAMES.record(KEY), RecordField.DUE, now - 5)
    claim = await claim_one(store)
    dead = DeadLetterRequest(KEY, claim.occurrence, "r", "e", next_due_ms=now + 50_000)
    assert await fail(store, "A", dead) == 2
    await assert_trigger_rule(r, KEY)
    assert await store.repair([KEY]) == 0


async def test_repair_leaves_a_retrying_reminder_alone(store: Store, r: aioredis.Redis) -> None:
    """A retry arms its trigger key, so start-up repair finds nothing to re-create for it."""
    now = await redis_now(r)
    claim = await due_claimed(store, KEY, now - 10)
    assert await fail(store, "A", Retry(KEY, claim.occurrence, now + 60_000, "boom")) == 1
    assert await r.pexpiretime(KEY) == now + 60_000
    assert await store.repair([KEY]) == 0


# -- the done list ----------------------------------------------------------------------


async def test_done_list_holds_each_processor_once(store: Store, r: aioredis.Redis) -> None:
    """A processor marked done twice, then named again by a retry, is recorded once."""
    now = await redis_now(r)
    claim = await due_claimed(store, KEY, now - 10)
    for name in ("sms", "sms", "hook"):
        assert await store.mark_done("A", claim, name)
    assert await r.hget(NAMES.record(KEY), RecordField.DONE) == "sms,hook"
    await fail(store, "A", Retry(KEY, claim.occurrence, now + 5000, "x", ("sms", "hook", "log")))
    assert await r.hget(NAMES.record(KEY), RecordField.DONE) == "sms,hook,log"


# -- disarm -----------------------------------------------------------------------------


async def test_disarm_covers_a_burst_at_one_instant(store: Store, r: aioredis.Redis) -> None:
    """A burst due at one millisecond, many pages long, has every trigger key's expiry taken off."""
    due = await redis_now(r) + 60_000
    keys = [f"send_message-{i}-burst" for i in range(50)]
    await store.schedule_many(req(k, due) for k in keys)
    assert await store.disarm(due - 1000, due, page=7) == 50
    assert [await r.pttl(k) for k in keys] == [-1] * 50


async def test_a_disarmed_one_shot_finishes_without_a_fired_marker(store: Store, r: aioredis.Redis) -> None:
    """The claim finds a disarmed trigger key alive, so no expired event of it exists: no marker."""
    now = await redis_now(r)
    await store.schedule(req(KEY, now + 300))
    await store.disarm(now, now + 300)
    await wait_past(r, now + 300)
    claim = (await store.claim_due("A", limit=10, lease_ms=60_000)).claims[0]
    assert not await r.exists(KEY)
    assert await store.complete_many(
        "A", [Completion(KEY, claim.occurrence, None)], fired_window_ms=WINDOW_MS
    )
    assert not await r.exists(NAMES.fired(KEY), NAMES.record(KEY), NAMES.lock(KEY))


async def test_an_expired_trigger_key_leaves_a_fired_marker(store: Store, r: aioredis.Redis) -> None:
    """A trigger key that expired may have raised an event: its finished one-shot is remembered."""
    now = await redis_now(r)
    await store.schedule(req(KEY, now + 50))
    await wait_past(r, now + 50)
    claim = (await store.claim_due("A", limit=10, lease_ms=60_000)).claims[0]
    assert await store.complete_many(
        "A", [Completion(KEY, claim.occurrence, None)], fired_window_ms=WINDOW_MS
    )
    assert await r.exists(NAMES.fired(KEY))


async def test_disarm_pages_go_on_after_the_last_entry_seen(store: Store, r: aioredis.Redis) -> None:
    """Entries claimed between two pages do not make the next page skip entries it has not seen."""
    now = await redis_now(r)
    due = now + 60_000
    keys = sorted(f"send_message-{i}-burst" for i in range(6))
    await store.schedule_many(req(k, due) for k in keys)
    looked, cursor = await store.disarm_page(DisarmCursor(now), due, 2)
    assert (looked, [await r.pttl(k) for k in keys[:2]]) == (2, [-1, -1])
    await r.zadd(NAMES.due, dict.fromkeys(keys[:2], now + 120_000))  # claimed by another instance
    while cursor is not None:
        looked, cursor = await store.disarm_page(cursor, due, 2)
    assert [await r.pttl(k) for k in keys] == [-1] * 6


# -- cancel -----------------------------------------------------------------------------


async def test_cancel_removes_a_pending_replay_of_the_key(store: Store, r: aioredis.Redis) -> None:
    """A replayed dead letter waiting beside a recurring reminder is cancelled with it and never fires."""
    now = await redis_now(r)
    entry_id, dead = await test_store._dead_letter(store, r, Every(60_000, now - 50), now - 50)
    await store.replay(replay_of(entry_id, dead, now, aux=True))
    member = f"{KEY}{AUX_SEP}replay:{entry_id}"
    assert await r.smembers(NAMES.aux(KEY)) == {member}
    assert await store.cancel(KEY) is True
    assert not await r.exists(KEY, NAMES.record(KEY), NAMES.record(member), NAMES.aux(KEY))
    assert await r.zcard(NAMES.due) == 0
    assert (await store.claim_due("A", limit=10, lease_ms=60_000)).claims == []


async def test_a_finished_replay_leaves_the_aux_set(store: Store, r: aioredis.Redis) -> None:
    """Completing an auxiliary replay removes it from its key's set, so cancel has nothing stale to do."""
    now = await redis_now(r)
    entry_id, dead = await test_store._dead_letter(store, r, Every(60_000, now - 50), now - 50)
    await store.replay(replay_of(entry_id, dead, now, aux=True))
    claim = await claim_one(store)
    done = await store.complete_many("A", [Completion(claim.member, 1, None)], fired_window_ms=WINDOW_MS)
    assert done == 1
    assert not await r.exists(NAMES.aux(KEY))


# -- the fired-marker window ------------------------------------------------------------


async def test_fired_marker_lasts_the_window_of_each_call(store: Store, r: aioredis.Redis) -> None:
    """The window is an argument of every finishing call, so a reloaded setting applies to the next one."""
    now = await redis_now(r)
    for key, window_ms in (("send_message-1-a", 5_000), ("send_message-2-b", 50_000)):
        claim = await due_claimed(store, key, now - 10)
        item = Completion(claim.member, claim.occurrence, None)
        assert await store.complete_many("A", [item], fired_window_ms=window_ms) == 1
        assert window_ms - 1000 < await r.pttl(NAMES.fired(key)) <= window_ms


# -- one batch for every verdict --------------------------------------------------------


async def test_finish_many_applies_every_kind_in_one_call(store: Store, r: aioredis.Redis) -> None:
    """Completion, retry, deferral and dead letter in one batch; a verdict no longer ours is refused."""
    now = await redis_now(r)
    keys = [f"send_message-{i}-v" for i in range(5)]
    await store.schedule_many(req(k, now - 10) for k in keys)
    claims = (await store.claim_due("A", limit=10, lease_ms=60_000)).claims
    occ = {c.member: c.occurrence for c in claims}
    items = [
        Completion(keys[0], occ[keys[0]], None, stat="skipped"),
        Retry(keys[1], occ[keys[1]], now + 5000, "boom", ("log",)),
        Deferral(keys[2], occ[keys[2]], now + 7000),
        DeadLetterRequest(keys[3], occ[keys[3]], "permanent_failure", "400", pending=("sms",)),
        Completion(keys[4], occ[keys[4]] + 1, None),
    ]
    assert await store.finish_many("A", items, fired_window_ms=WINDOW_MS) == [True] * 4 + [False]
    assert not await r.exists(NAMES.record(keys[0]), NAMES.record(keys[3]))
    assert await r.hmget(NAMES.record(keys[1]), ["d", "a", "f", "e"]) == [str(now + 5000), "1", "log", "boom"]
    assert await r.hmget(NAMES.record(keys[2]), ["d", "a"]) == [str(now + 7000), None]
    assert await r.exists(NAMES.record(keys[4]), NAMES.lock(keys[4])) == 2
    ((_, fields),) = await dead_letters(r)
    assert (fields["key"], fields["reason"], fields["processors"]) == (keys[3], "permanent_failure", "sms")
    assert await r.hgetall(NAMES.stats) == {"skipped": "1", "retried": "1", "dead": "1"}


# -- adoption ---------------------------------------------------------------------------


async def test_adopt_dead_letters_a_raw_payload_above_the_limit(store: Store, r: aioredis.Redis) -> None:
    """An oversized raw payload is not adopted: it becomes a dead letter naming its key, and the key goes."""
    big, small = "send_message-1-big", "send_message-2-small"
    value = json.dumps({"text": "x" * 100})
    await r.set(big, value, px=60_000)
    await r.set(small, '{"a":1}', px=60_000)
    before = await redis_now(r)
    found = await store.raw.adopt([big, small], payload_max_bytes=50)
    assert found == Adoption(adopted=1, known=0, other=0, oversized=(big,))
    assert not await r.exists(big, NAMES.record(big))
    assert await r.zscore(NAMES.due, big) is None
    assert await r.hget(NAMES.record(small), RecordField.PAYLOAD) == '{"a":1}'
    ((_, fields),) = await dead_letters(r)
    assert before + 59_000 < int(fields.pop("due")) <= before + 61_000
    fields.pop("dead_at")
    assert fields == {
        "key": big,
        "occurrence": "1",
        "reason": "payload_too_large",
        "error": f"payload is {len(value)} bytes, above the limit of 50 bytes",
        "attempts": "0",
        "processors": "",
        "done": "",
        "payload": "{}",
    }
    assert await r.hget(NAMES.stats, "dead") == "1"


async def test_indexed_trigger_keys_are_written_without_an_expire_event(
    store: Store, r: aioredis.Redis
) -> None:
    """Schedule, bulk schedule and re-arm write the key with its TTL but raise no ``expire`` event.

    The daemons' subscribers adopt the keys of ``expire`` events as raw keys; an indexed one
    would cost every daemon a read and Redis an adoption call for nothing.
    """
    await r.config_set("notify-keyspace-events", "KEg")
    pubsub = r.pubsub()
    await pubsub.psubscribe("__keyspace@0__:send_message-*")
    try:
        now = await redis_now(r)
        await store.schedule(req(KEY, now + 60_000))
        await store.schedule_many([req(f"send_message-{n}-bulk", now + 60_000) for n in range(3)])
        claim = await due_claimed(store, "send_message-9-again", now - 10, schedule=Every(60_000, now - 10))
        assert await store.finish_many(
            "A", [Completion(claim.member, claim.occurrence, now + 50_000)], fired_window_ms=WINDOW_MS
        ) == [1]
        await r.publish("__keyspace@0__:send_message-end", "end")  # the last message to wait for
        events = []
        while (msg := await pubsub.get_message(timeout=5)) is not None and msg["data"] != "end":
            if msg["type"] == "pmessage":
                events.append((msg["channel"].removeprefix("__keyspace@0__:"), msg["data"]))
        assert ("send_message-42-daily", "restore") in events
        assert [e for e in events if e[1] == "expire"] == []
        assert await r.pexpiretime("send_message-9-again") == now + 50_000  # type: ignore[arg-type]
        assert await r.get(KEY) == "1"
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]


async def test_trigger_keys_are_written_where_an_acl_refuses_restore(
    store: Store, r: aioredis.Redis, redis_url: str
) -> None:
    """Under a user without @dangerous (RESTORE refused) the trigger key is written by SET ... PXAT."""
    await r.acl_setuser(
        "nodanger",
        enabled=True,
        passwords=["+pw"],
        keys=["*"],
        channels=["*"],
        commands=["+@all", "-@dangerous"],
    )
    limited = aioredis.Redis.from_url(redis_url, username="nodanger", password="pw", decode_responses=True)
    try:
        assert await r.acl_dryrun("nodanger", "RESTORE", "k", "0", "x") != "OK"  # refused to this user
        mine = Store(limited, NAMES)
        now = await redis_now(r)
        await mine.schedule(req(KEY, now + 60_000))
        await mine.schedule_many([req(f"send_message-{n}-bulk", now + 60_000) for n in range(3)])
        for key in (KEY, "send_message-0-bulk", "send_message-2-bulk"):
            assert await r.pexpiretime(key) == now + 60_000  # type: ignore[arg-type]
            assert await r.get(key) == "1"
    finally:
        await limited.aclose()
        await r.acl_deluser("nodanger")
