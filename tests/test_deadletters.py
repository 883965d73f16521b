"""Dead letters through the CLI: list, replay (plain and auxiliary) and purge, on real script entries."""

from __future__ import annotations

import asyncio
import os
import pty
import subprocess
import sys

import pytest
import redis
import redis.asyncio as aioredis

from reminderd.api import AsyncReminders, When
from reminderd.api.deadletters import DeadLetters, check_id
from reminderd.config import load_config_text
from reminderd.core.recurrence import next_due_ms
from reminderd.errors import InputError
from reminderd.storage.names import Names
from reminderd.storage.store import DeadLetterRequest
from tests import test_cli
from tests.test_cli import CONFIG, Cli

NAMES = Names("reminderd")
AUX = "\x1f"
config_file = test_cli.config_file
rds = test_cli.rds
cli = test_cli.cli  # the same CLI runner fixture


def dead_letter(
    url: str, key: str, *, every_ms: int | None = None, payload: dict[str, object] | None = None
) -> str:
    """Schedule ``key`` due now, claim it and fail it for good (as the pipeline does); the entry id."""

    async def go() -> str:
        client = aioredis.Redis.from_url(url, decode_responses=True)
        try:
            api = AsyncReminders(client, load_config_text(CONFIG))
            now = await api.store.now_ms()
            when = When(at=now - 1, every=every_ms)
            await api.schedule(key, payload=payload, when=when)
            claims = (await api.store.claim_due("test-1", limit=10, lease_ms=30_000)).claims
            (claim,) = [c for c in claims if c.key == key]
            nxt = next_due_ms(claim.schedule, claim.nominal_due_ms)
            item = DeadLetterRequest(
                claim.member,
                claim.occurrence,
                "permanent",
                "HTTP 400: bad recipient",
                ("log",),
                ("webhook",),
                nxt,
            )
            outcome = await api.store.fail("test-1", item, fired_window_ms=10_000)
            assert outcome == 2
            rows = await client.xrevrange(NAMES.dead, count=1)
            return str(rows[0][0])
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_list_shows_entries_newest_first(cli: Cli) -> None:
    """dead list returns DeadLetter fields from the stream, newest first, as JSON and as a table."""
    first = dead_letter(cli.url, "send_message-1-a", payload={"n": 1})
    second = dead_letter(cli.url, "send_message-2-b")
    data = cli("dead", "list", "--json").json()
    assert isinstance(data, list)
    assert [row["id"] for row in data] == [second, first]
    row = data[1]
    assert row["key"] == "send_message-1-a"
    assert (row["occurrence"], row["attempts"], row["reason"]) == (1, 1, "permanent")
    assert row["processors"] == ["webhook"]
    assert row["payload"] == {"n": 1}
    assert row["error"] == "HTTP 400: bad recipient"
    assert row["dead_at_ms"] >= row["due_at_ms"]
    lines = cli("dead", "list").out.splitlines()
    assert lines[0].split()[:4] == ["ID", "KEY", "OCC", "REASON"]
    assert lines[1].startswith(f"{second}  send_message-2-b")
    assert cli("dead", "list", "--limit", "1", "--json").json()[0]["id"] == second  # type: ignore[index]


def test_replay_one_shot_schedules_it_due_now(cli: Cli, rds: redis.Redis) -> None:
    """Replaying a one-shot's dead letter restores its record due now with its occurrence and done list."""
    key = "send_message-1-a"
    entry = dead_letter(cli.url, key, payload={"n": 1})
    assert rds.exists(NAMES.record(key)) == 0
    res = cli("dead", "replay", entry)
    assert (res.code, res.out) == (0, f"replayed {entry}: {key} occurrence 1\n")
    record = rds.hgetall(NAMES.record(key))
    assert (record["o"], record["f"], record["p"]) == ("1", "log", '{"n":1}')
    assert rds.zscore(NAMES.due, key) == int(record["d"])
    assert rds.xlen(NAMES.dead) == 0
    missing = cli("dead", "replay", entry)
    assert (missing.code, missing.err) == (1, f"reminderd: no dead letter '{entry}'\n")


def test_replay_of_recurring_key_creates_auxiliary_record(cli: Cli, rds: redis.Redis) -> None:
    """A recurring reminder that moved on keeps its record; the replay is an auxiliary record beside it."""
    key = "send_message-1-daily"
    entry = dead_letter(cli.url, key, every_ms=3_600_000)
    live_before = rds.hgetall(NAMES.record(key))
    assert live_before["o"] == "2"
    res = cli("dead", "replay", entry, "--json")
    assert res.json() == [{"id": entry, "key": key, "occurrence": 1, "aux": True}]
    assert rds.hgetall(NAMES.record(key)) == live_before
    assert 3_500_000 < int(rds.pttl(key)) <= 3_600_000
    member = f"{key}{AUX}replay:{entry}"
    aux = rds.hgetall(NAMES.record(member))
    assert (aux["o"], aux["f"]) == ("1", "log")
    assert rds.zscore(NAMES.due, member) == int(aux["d"])
    assert rds.zscore(NAMES.due, key) == int(live_before["d"])


def test_replay_all_and_human_output(cli: Cli, rds: redis.Redis) -> None:
    """dead replay --all replays every entry and empties the stream."""
    a = dead_letter(cli.url, "send_message-1-a")
    b = dead_letter(cli.url, "send_message-2-b")
    res = cli("dead", "replay", "--all")
    assert res.out.splitlines() == [
        f"replayed {a}: send_message-1-a occurrence 1",
        f"replayed {b}: send_message-2-b occurrence 1",
        "replayed 2 dead letters",
    ]
    assert rds.xlen(NAMES.dead) == 0
    assert rds.zcard(NAMES.due) == 2


def test_purge_one_and_all(cli: Cli, rds: redis.Redis) -> None:
    """dead purge ID deletes one entry (exit 1 if absent); --all deletes the rest and counts them."""
    a = dead_letter(cli.url, "send_message-1-a")
    dead_letter(cli.url, "send_message-2-b")
    dead_letter(cli.url, "send_message-3-c")
    assert cli("dead", "purge", a).out == f"purged {a}\n"
    again = cli("dead", "purge", a)
    assert (again.code, again.err) == (1, f"reminderd: no dead letter '{a}'\n")
    assert cli("dead", "purge", "--all", "--json").json() == {"purged": 2}
    assert rds.exists(NAMES.dead) == 0
    assert rds.zcard(NAMES.due) == 0  # purging never schedules anything


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["dead", "replay"], "give a dead-letter id or --all"),
        (["dead", "purge"], "give a dead-letter id or --all"),
        (["dead", "replay", "1-0", "--all"], "give either a dead-letter id or --all, not both"),
        (
            ["dead", "replay", "abc"],
            "invalid dead-letter id 'abc': expected <ms>-<seq> such as 1700000000000-0",
        ),
        (
            ["dead", "purge", "1-0-0"],
            "invalid dead-letter id '1-0-0': expected <ms>-<seq> such as 1700000000000-0",
        ),
        (["dead", "list", "--limit", "0"], "--limit must be at least 1"),
    ],
)
def test_bad_dead_letter_input_exits_2(cli: Cli, args: list[str], message: str) -> None:
    """Missing, conflicting or malformed dead-letter arguments exit 2 with one exact line."""
    res = cli(*args)
    assert (res.code, res.out, res.err) == (2, "", f"reminderd: {message}\n")


def test_missing_id_exits_1(cli: Cli) -> None:
    """A well-formed id that is not in the stream exits 1 for replay and purge."""
    for action in ("replay", "purge"):
        res = cli("dead", action, "1-0")
        assert (res.code, res.err) == (1, "reminderd: no dead letter '1-0'\n")


def test_check_id_accepts_stream_ids() -> None:
    """Full and millisecond-only stream ids pass; anything else is an input error."""
    assert check_id("1700000000000-0") == "1700000000000-0"
    assert check_id("1700000000000") == "1700000000000"
    with pytest.raises(InputError, match="invalid dead-letter id '-'"):
        check_id("-")


def test_replay_beside_raw_trigger_key_keeps_it(cli: Cli, rds: redis.Redis) -> None:
    """A raw trigger key written again after the dead letter is not deleted by the replay."""
    key = "send_message-1-a"
    entry = dead_letter(cli.url, key)
    rds.set(key, "1", ex=100)
    res = cli("dead", "replay", entry)
    assert res.out.endswith("(auxiliary record beside the live reminder)\n")
    assert int(rds.pttl(key)) > 90_000


def test_dead_letters_count(redis_url: str) -> None:
    """DeadLetters.count reports the stream length."""
    dead_letter(redis_url, "send_message-1-a")

    async def go() -> int:
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            return await DeadLetters(client, NAMES).count()
        finally:
            await client.aclose()

    assert asyncio.run(go()) == 1


def test_dead_list_masks_phone_numbers_and_secrets_unless_revealed(cli: Cli) -> None:
    """dead list, as text and JSON, masks phone numbers and secret-named payload fields unless --reveal."""
    dead_letter(cli.url, "send_message-1-a", payload={"to": "+4915123456789", "password": "hunter2"})
    shown = cli("dead", "list", "--json").json()
    assert isinstance(shown, list)
    assert shown[0]["payload"] == {"to": "+4915*******89", "password": "***"}
    assert "+4915123456789" not in cli("dead", "list").out
    revealed = cli("dead", "list", "--json", "--reveal").json()
    assert isinstance(revealed, list)
    assert revealed[0]["payload"] == {"to": "+4915123456789", "password": "hunter2"}


def test_replay_all_shows_progress_on_a_terminal_only(cli: Cli) -> None:
    """On a terminal ``dead replay --all`` draws a progress line on stderr; piped, stderr stays clean."""
    for i in range(3):
        dead_letter(cli.url, f"send_message-{i}-p")
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "reminderd", "dead", "replay", "--all"],
            env=cli.env(),
            stdout=subprocess.PIPE,
            stderr=secondary,
            timeout=60,
            check=False,
        )
        os.set_blocking(primary, False)
        drawn = os.read(primary, 65536).decode()
    finally:
        os.close(primary)
        os.close(secondary)
    assert proc.returncode == 0
    assert "replaying 3/3 (100%)" in drawn
    assert "replayed 3 dead letters" in proc.stdout.decode()
    for i in range(3):
        dead_letter(cli.url, f"send_message-{i}-q")
    piped = cli.sub("dead", "replay", "--all")
    assert piped.code == 0
    assert "replaying" not in piped.err
