"""The command line against a private redis-server: round trips, raw state, bad input, exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from reminderd.cli import main
from reminderd.storage.embedded import EmbeddedRedis
from tests.redis_server import RedisServer, free_port
from tests.serving import self_signed_cert

CONFIG = """\
rules:
  send_message:
    processors: [log]
  billing:
    processors: [log]
limits:
  payload_max_bytes: 64
daemon:
  heartbeat_interval: 1s
  backlog_alert: 5s
"""
NS = "reminderd"
REPO = Path(__file__).resolve().parent.parent


@dataclass
class Result:
    """What one CLI run produced."""

    code: int
    out: str
    err: str

    def json(self) -> object:
        """stdout parsed as JSON."""
        return json.loads(self.out)


class Cli:
    """Runs ``reminderd`` in-process (``main``) or as a subprocess, with the test config."""

    def __init__(self, capsys: pytest.CaptureFixture[str], config: Path, url: str) -> None:
        self.capsys = capsys
        self.config = config
        self.url = url

    def __call__(self, *args: str) -> Result:
        """Run ``main(args)`` in this process and capture its output."""
        self.capsys.readouterr()
        code = main(list(args))
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a subprocess run."""
        env = {**os.environ, "REMINDERD_CONFIG": str(self.config), "REMINDERD_REDIS_URL": self.url}
        env["PYTHONPATH"] = str(REPO)
        return {**env, **extra}

    def sub(self, *args: str, stdin: str | None = None, **env: str) -> Result:
        """Run ``python -m reminderd`` as a real process."""
        proc = subprocess.run(
            [sys.executable, "-m", "reminderd", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env(**env),
            timeout=60,
            check=False,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """The test config: two rules, a 64-byte payload limit, 1 s heartbeats, 5 s backlog alert."""
    path = tmp_path / "reminderd.yaml"
    path.write_text(CONFIG)
    return path


@pytest.fixture
def cli(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, config_file: Path, redis_url: str
) -> Cli:
    """A CLI runner wired to the flushed session server through the environment."""
    monkeypatch.setenv("REMINDERD_CONFIG", str(config_file))
    monkeypatch.setenv("REMINDERD_REDIS_URL", redis_url)
    return Cli(capsys, config_file, redis_url)


@pytest.fixture
def rds(redis_url: str) -> Iterator[redis.Redis]:
    """A decoding client for inspecting raw state."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def test_schedule_show_list_cancel_round_trip(cli: Cli) -> None:
    """A reminder scheduled by the CLI is shown, listed and cancelled, then no longer found."""
    res = cli("schedule", "send_message-42-welcome", "--in", "10s", "--payload", '{"text": "hi"}')
    assert res.code == 0, res.err
    assert res.out.splitlines()[0] == "key:        send_message-42-welcome"
    assert "schedule:   once" in res.out
    assert "(in 9s)" in res.out or "(in 10s)" in res.out
    shown = cli("show", "send_message-42-welcome", "--json").json()
    assert isinstance(shown, dict)
    assert shown["payload"] == {"text": "hi"}
    assert (shown["user_id"], shown["type"], shown["rule"]) == ("42", "welcome", "send_message")
    assert 8000 < shown["due_in_ms"] <= 10_000
    listed = cli("list")
    assert listed.out.splitlines()[0].split() == ["KEY", "NEXT", "DUE", "IN", "SCHEDULE", "OCC", "ATTEMPTS"]
    assert listed.out.splitlines()[1].startswith("send_message-42-welcome  ")
    assert cli("cancel", "send_message-42-welcome").out == "cancelled send_message-42-welcome\n"
    gone = cli("show", "send_message-42-welcome")
    assert (gone.code, gone.err) == (1, "reminderd: no reminder 'send_message-42-welcome'\n")
    assert cli("list").out == "no reminders\n"


def test_schedule_writes_trigger_key_record_and_index(cli: Cli, rds: redis.Redis) -> None:
    """Schedule writes a trigger key expiring after the delay, record and index entry; cancel clears."""
    key = "send_message-42-welcome"
    assert cli("schedule", key, "--in", "10s", "--payload", '{"a": 1}').code == 0
    pttl_ms = int(rds.pttl(key))
    assert 8000 < pttl_ms <= 10_000
    record = rds.hgetall(f"{NS}:r:{key}")
    assert record["p"] == '{"a":1}'
    assert record["o"] == "1"
    assert rds.zscore(f"{NS}:due", key) == int(record["d"])
    assert cli("cancel", key).code == 0
    assert rds.exists(key, f"{NS}:r:{key}") == 0
    assert rds.zscore(f"{NS}:due", key) is None


def test_schedule_by_user_type_and_rule(cli: Cli) -> None:
    """--user/--type/--rule build the key; without --rule the first configured rule is used."""
    res = cli("schedule", "--user", "42", "--type", "invoice", "--rule", "billing", "--in", "1m", "--json")
    data = res.json()
    assert isinstance(data, dict)
    assert (data["key"], data["written"]) == ("billing-42-invoice", True)
    res = cli("schedule", "--user", "7", "--type", "daily", "--in", "1m", "--json")
    assert res.json()["key"] == "send_message-7-daily"  # type: ignore[index]


def test_every_with_first_occurrence_and_cron_in_zone(cli: Cli) -> None:
    """--every with --at sets the anchor; --cron with --tz fires at the zone's wall-clock time."""
    data = cli("schedule", "send_message-1-tick", "--every", "1h", "--at", "+2m", "--json").json()
    assert isinstance(data, dict)
    assert data["schedule"] == "every 1h"
    assert 118_000 < data["due_in_ms"] <= 120_000
    data = cli(
        "schedule", "send_message-1-morning", "--cron", "0 9 * * *", "--tz", "Europe/Berlin", "--json"
    ).json()
    assert isinstance(data, dict)
    assert data["schedule_spec"] == {"cron": "0 9 * * *", "tz": "Europe/Berlin"}
    assert data["due_at"][11:] in ("08:00:00Z", "07:00:00Z")  # CET or CEST


def test_only_if_absent_leaves_existing_reminder(cli: Cli, rds: redis.Redis) -> None:
    """--only-if-absent on an existing key exits 0, says so, reports written false and changes nothing."""
    key = "send_message-42-welcome"
    cli("schedule", key, "--in", "1h", "--payload", '{"v": 1}')
    res = cli("schedule", key, "--in", "5s", "--payload", '{"v": 2}', "--only-if-absent")
    assert (res.code, res.out) == (0, f"{key}: exists, left unchanged\n")
    res = cli("schedule", key, "--in", "5s", "--only-if-absent", "--json")
    assert res.json() == {"key": key, "written": False}
    assert rds.hget(f"{NS}:r:{key}", "p") == '{"v":1}'
    rds.set("send_message-9-raw", "1", ex=100)
    res = cli("schedule", "send_message-9-raw", "--in", "5s", "--only-if-absent")
    assert res.out == "send_message-9-raw: exists, left unchanged\n"


def test_reschedule_changes_time_keeps_payload(cli: Cli) -> None:
    """reschedule moves the due time and keeps the payload unless a new one is given."""
    key = "send_message-42-welcome"
    cli("schedule", key, "--in", "1h", "--payload", '{"v": 1}')
    data = cli("reschedule", key, "--in", "30s", "--json").json()
    assert isinstance(data, dict)
    assert data["payload"] == {"v": 1}
    assert 28_000 < data["due_in_ms"] <= 30_000
    data = cli("reschedule", key, "--every", "1d", "--payload", '{"v": 2}', "--json").json()
    assert isinstance(data, dict)
    assert (data["payload"], data["schedule"]) == ({"v": 2}, "every 1d")


def test_show_recurring_lists_following_due_times(cli: Cli) -> None:
    """show of a recurring reminder prints its details and the next three due times after this one."""
    cli("schedule", "send_message-42-daily", "--every", "24h", "--at", "2030-01-01T09:00:00Z")
    lines = cli("show", "send_message-42-daily").out.splitlines()
    assert "next due:   2030-01-01T09:00:00Z" in "\n".join(lines)
    then = lines[lines.index(next(line for line in lines if line.startswith("then:"))) :]
    assert [line.removeprefix("then:").split()[0] for line in then] == [
        "2030-01-02T09:00:00Z",
        "2030-01-03T09:00:00Z",
        "2030-01-04T09:00:00Z",
    ]
    assert "attempts:   0" in lines
    assert "done:       -" in lines


def test_show_raw_key_not_yet_adopted(cli: Cli, rds: redis.Redis) -> None:
    """A raw SET trigger key without a record is shown as not yet adopted with its time left."""
    rds.set("send_message-5-raw", "1", px=100_000)
    res = cli("show", "send_message-5-raw")
    assert res.code == 0
    assert "state: raw key, not yet adopted, fires in 1m3" in res.out
    data = cli("show", "send_message-5-raw", "--json").json()
    assert isinstance(data, dict)
    assert data["raw"] is True
    assert 90_000 < data["pttl_ms"] <= 100_000


def test_list_filters_and_limit(cli: Cli) -> None:
    """list filters by user, type, rule and due time, and stops at --limit."""
    cli("schedule", "send_message-1-a", "--in", "1m")
    cli("schedule", "send_message-2-a", "--in", "2m")
    cli("schedule", "send_message-1-b", "--in", "3h")
    cli("schedule", "billing-1-a", "--in", "4m")

    def keys(*args: str) -> list[str]:
        data = cli("list", "--json", *args).json()
        assert isinstance(data, list)
        return [row["key"] for row in data]

    assert keys() == ["send_message-1-a", "send_message-2-a", "billing-1-a", "send_message-1-b"]
    assert keys("--user", "1") == ["send_message-1-a", "billing-1-a", "send_message-1-b"]
    assert keys("--type", "a", "--rule", "send_message") == ["send_message-1-a", "send_message-2-a"]
    assert keys("--due-before", "+1h") == ["send_message-1-a", "send_message-2-a", "billing-1-a"]
    assert keys("--limit", "2") == ["send_message-1-a", "send_message-2-a"]


BAD_INPUT = [
    (["schedule", "bad", "--in", "1s"], "invalid key 'bad': matches no configured rule prefix"),
    (
        ["schedule", "send_message-42", "--in", "1s"],
        "invalid key 'send_message-42': expected <prefix>-<userId>-<type>, found no type",
    ),
    (["schedule", "send_message--x", "--in", "1s"], "invalid key 'send_message--x': user id is empty"),
    (
        ["schedule", "--user", "42", "--type", "a-b", "--in", "1s"],
        "cannot build key: type 'a-b' must not contain '-'",
    ),
    (["schedule", "--user", "42", "--in", "1s"], "give a key, or both user and type"),
    (
        ["schedule", "send_message-1-x", "--user", "1", "--type", "y", "--in", "1s"],
        "give either a key or user and type, not both",
    ),
    (
        ["schedule", "send_message-1-x", "--rule", "billing", "--in", "1s"],
        "give either a key or --user/--type/--rule, not both",
    ),
    (
        ["schedule", "--user", "1", "--type", "x", "--rule", "nope", "--in", "1s"],
        "unknown rule 'nope' (configured: send_message, billing)",
    ),
    (
        ["schedule", "send_message-1-x", "--in", "1s", "--payload", "{"],
        "payload is not valid JSON: Expecting property name enclosed in double quotes: "
        "line 1 column 2 (char 1)",
    ),
    (
        ["schedule", "send_message-1-x", "--in", "1s", "--payload", "[1]"],
        "payload must be a JSON object, got list",
    ),
    (
        ["schedule", "send_message-1-x", "--in", "1s", "--payload", json.dumps({"t": "x" * 60})],
        "payload is 68 bytes, above the limit of 64 bytes",
    ),
    (
        ["schedule", "send_message-1-x", "--in", "1s", "--payload", "{}", "--payload-file", "f"],
        "give either --payload or --payload-file, not both",
    ),
    (
        ["schedule", "send_message-1-x", "--in", "1s", "--payload-file", "/nonexistent/p.json"],
        "--payload-file: cannot read /nonexistent/p.json: No such file or directory",
    ),
    (
        ["schedule", "send_message-1-x", "--in", "10q"],
        "--in: invalid duration '10q': expected e.g. 500ms, 30s, 5m, 24h, 7d",
    ),
    (["schedule", "send_message-1-x", "--in=-5s"], "--in: duration '-5s' must not be negative"),
    (["schedule", "send_message-1-x", "--in", "-5s"], "--in: duration '-5s' must not be negative"),
    (["schedule", "send_message-1-x", "--every", "-1h"], "--every: duration '-1h' must not be negative"),
    (
        ["schedule", "send_message-1-x", "--every", "1ms"],
        "every 1ms is shorter than the minimum interval 1s (limits.min_interval)",
    ),
    (
        ["schedule", "send_message-1-x", "--in", "1s", "--payload", '{"a":' * 10_000 + "1" + "}" * 10_000],
        "payload nests more than 32 levels (limits.payload_max_depth)",
    ),
    (
        ["schedule", "send_message-1-x", "--in", "1s", "--payload", '{"a":' * 40 + "1" + "}" * 40],
        "payload nests more than 32 levels (limits.payload_max_depth)",
    ),
    (["schedule", "send_message-1-x", "--every", "0s"], "every must be at least 1ms"),
    (
        ["schedule", "send_message-1-x", "--every", "often"],
        "--every: invalid duration 'often': expected e.g. 500ms, 30s, 5m, 24h, 7d",
    ),
    (
        ["schedule", "send_message-1-x", "--at", "tomorrow"],
        "--at: invalid time 'tomorrow': expected ISO-8601 such as 2026-11-24T09:00:00+01:00 or "
        "2026-11-24T08:00:00Z, a local time such as 2026-11-24 09:00 (read in UTC), @<epoch-seconds> "
        "such as @1795510800, +<duration> such as +5m, or now",
    ),
    (
        ["schedule", "send_message-1-x", "--at", "1960-01-01T00:00:00Z"],
        "--at: time must not be before 1970-01-01T00:00:00Z",
    ),
    (
        ["schedule", "send_message-1-x", "--cron", "61 * * * *"],
        "invalid cron expression '61 * * * *': minute field '61': the last value (61) is higher than "
        "the maximum value (59)",
    ),
    (
        ["schedule", "send_message-1-x", "--cron", "0 9 * *"],
        "invalid cron expression '0 9 * *': expected 5 fields (minute hour day month weekday), got 4",
    ),
    (
        ["schedule", "send_message-1-x", "--cron", "0 0 31 2 *"],
        "invalid cron expression '0 0 31 2 *': it never matches a date",
    ),
    (
        ["schedule", "send_message-1-x", "--cron", "0 9 * * *", "--tz", "Mars/Base"],
        "--tz: unknown time zone 'Mars/Base'",
    ),
    (
        ["schedule", "send_message-1-x", "--at", "2030-01-01 09:00", "--tz", "Nowhere"],
        "--tz: unknown time zone 'Nowhere'",
    ),
    (
        ["schedule", "send_message-1-x", "--in", "1s", "--at", "now"],
        "--in and --at cannot be combined (both set the first due time)",
    ),
    (
        ["schedule", "send_message-1-x", "--every", "1h", "--cron", "0 9 * * *"],
        "--every and --cron cannot be combined",
    ),
    (["schedule", "send_message-1-x"], "give one of --in, --at, --every or --cron"),
    (["schedule", "send_message-1-x", "--in", "1s", "--tz", "UTC"], "--tz applies only to --cron and --at"),
    (["reschedule", "send_message-1-x"], "give one of --in, --at, --every or --cron"),
    (["show", "nope-1"], "invalid key 'nope-1': matches no configured rule prefix"),
    (
        ["cancel", "send_message-1"],
        "invalid key 'send_message-1': expected <prefix>-<userId>-<type>, found no type",
    ),
    (["list", "--limit", "0"], "--limit must be at least 1"),
    (["list", "--rule", "nope"], "unknown rule 'nope' (configured: send_message, billing)"),
    (
        ["list", "--due-before", "soon"],
        "--due-before: invalid time 'soon': expected ISO-8601 such as 2026-11-24T09:00:00+01:00 or "
        "2026-11-24T08:00:00Z, a local time such as 2026-11-24 09:00 (read in UTC), @<epoch-seconds> "
        "such as @1795510800, +<duration> such as +5m, or now",
    ),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUT)
def test_bad_input_exits_2_with_exact_message(cli: Cli, args: list[str], message: str) -> None:
    """Every rejected input prints one exact line on stderr, nothing on stdout, and exits 2."""
    res = cli(*args)
    assert (res.code, res.out, res.err) == (2, "", f"reminderd: {message}\n")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["schedule", "send_message-1-x", "--in", "1s", "--misfire", "bogus"], "invalid choice: 'bogus'"),
        (["list", "--limit", "many"], "invalid int value: 'many'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "the following arguments are required: COMMAND"),
        (["dead"], "the following arguments are required: ACTION"),
    ],
)
def test_usage_errors_exit_2(cli: Cli, args: list[str], fragment: str) -> None:
    """argparse usage errors exit 2 with the usage and the reason on stderr."""
    res = cli(*args)
    assert res.code == 2
    assert fragment in res.err
    assert res.err.startswith("usage: reminderd")


@pytest.mark.parametrize(
    "args",
    [
        ["show", "send_message-1-x"],
        ["cancel", "send_message-1-x"],
        ["reschedule", "send_message-1-x", "--in", "1s"],
    ],
)
def test_missing_reminder_exits_1(cli: Cli, args: list[str]) -> None:
    """show, cancel and reschedule of a key with no reminder exit 1 with one line."""
    res = cli(*args)
    assert (res.code, res.out, res.err) == (1, "", "reminderd: no reminder 'send_message-1-x'\n")


def test_payload_file_and_misfire(cli: Cli, tmp_path: Path, rds: redis.Redis) -> None:
    """--payload-file reads the payload from a file; --misfire is stored on the record."""
    payload = tmp_path / "p.json"
    payload.write_text('{"from": "file"}')
    cli("schedule", "send_message-1-x", "--every", "1h", "--payload-file", str(payload), "--misfire", "skip")
    assert rds.hget(f"{NS}:r:send_message-1-x", "p") == '{"from":"file"}'
    assert rds.hget(f"{NS}:r:send_message-1-x", "m") == "skip"


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A redis-server speaking TLS with a self-signed certificate: its ``rediss://`` URL and the cert."""
    made = self_signed_cert(tmp_path)
    if made is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = made
    port = free_port()
    tls = ("--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key))
    server = RedisServer(*tls, "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no")
    try:
        server.start()
    except Exception as exc:  # a server built without TLS refuses the options
        server.close()
        pytest.skip(f"this redis-server has no TLS: {exc}")
    yield f"rediss://127.0.0.1:{port}/0", cert
    server.close()


def test_an_untrusted_tls_certificate_is_named_not_taken_for_eperm(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, tls_redis: tuple[str, Path]
) -> None:
    """A ``rediss://`` server whose certificate is not trusted: exit 3 naming the TLS failure."""
    url, _ = tls_redis
    monkeypatch.setenv("REMINDERD_REDIS_URL", url)
    res = cli("status")
    assert (res.code, res.err) == (
        3,
        f"reminderd: cannot reach Redis at {url}: TLS: CERTIFICATE_VERIFY_FAILED (self-signed certificate)\n",
    )


def test_redis_tls_ca_file_makes_the_certificate_trusted(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, tls_redis: tuple[str, Path], tmp_path: Path
) -> None:
    """``redis.tls.ca_file`` naming the server's certificate: the CLI connects over TLS."""
    url, cert = tls_redis
    config = tmp_path / "tls.yaml"
    config.write_text(CONFIG + f"redis:\n  tls:\n    ca_file: {cert}\n")
    monkeypatch.setenv("REMINDERD_CONFIG", str(config))
    monkeypatch.setenv("REMINDERD_REDIS_URL", url)
    res = cli("status")
    assert res.code == 4, res.err  # reached: no daemon runs
    assert "redis:" in res.out


def test_redis_unreachable_exits_3_with_one_masked_line(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """With Redis down every command exits 3 with one line naming the URL, password masked."""
    port = free_port()
    monkeypatch.setenv("REMINDERD_REDIS_URL", f"redis://user:s3cret@127.0.0.1:{port}/0")
    expected = f"reminderd: cannot reach Redis at redis://user:***@127.0.0.1:{port}/0: Connection refused\n"
    for args in (["list"], ["status"], ["schedule", "send_message-1-x", "--in", "1s"], ["dead", "list"]):
        res = cli(*args)
        assert (res.code, res.out, res.err) == (3, "", expected)


def test_config_error_exits_2(cli: Cli, tmp_path: Path) -> None:
    """A config with an unknown key fails every command with exit 2 and the file and path named."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("daemon:\n  sweep_intervall: 1s\nrules: {}\n")
    res = cli("list", "-c", str(bad))
    assert res.code == 2
    assert res.err == (
        f"reminderd: {bad}: daemon.sweep_intervall: "
        "unknown key (check the spelling; see docs/config-reference.md)\n"
    )
    two = tmp_path / "two.yaml"
    two.write_text("daemon:\n  sweep_intervall: 1s\n  lease: soon\n")
    res = cli("check-config", "-c", str(two))
    assert res.code == 2
    assert len(res.err.splitlines()) == 2
    assert all(line.startswith(f"reminderd: {two}: daemon.") for line in res.err.splitlines())
    missing = cli("check-config", "-c", str(tmp_path / "none.yaml"))
    assert (missing.code, missing.err) == (2, f"reminderd: {tmp_path / 'none.yaml'}: config file not found\n")


def test_check_config_prints_ok_and_masked_settings(cli: Cli, tmp_path: Path) -> None:
    """check-config prints ok with the file; --json adds the settings with the password masked."""
    assert cli("check-config").out == f"ok: {cli.config}\n"
    secret = tmp_path / "secret.yaml"
    secret.write_text(CONFIG + "redis:\n  url: redis://127.0.0.1:6399/0\n  password: hunter2\n")
    res = cli("check-config", "--json", "--config", str(secret))
    assert res.code == 0
    data = res.json()
    assert isinstance(data, dict)
    assert data["ok"] is True
    assert data["settings"]["redis"]["password"] == "***"
    assert "hunter2" not in res.out


def test_config_option_before_command(cli: Cli, tmp_path: Path) -> None:
    """-c given before the command name is honoured like one given after it."""
    res = cli("-c", str(tmp_path / "absent.yaml"), "check-config")
    assert (res.code, res.err) == (2, f"reminderd: {tmp_path / 'absent.yaml'}: config file not found\n")


def test_subprocess_schedule_show_and_stdin_payload(cli: Cli) -> None:
    """As a real process: schedule with a payload from stdin, then show it as JSON."""
    res = cli.sub("schedule", "send_message-77-sub", "--in", "1h", "--payload-file", "-", stdin='{"x": 7}')
    assert res.code == 0, res.err
    assert res.out.startswith("key:        send_message-77-sub\n")
    shown = cli.sub("show", "send_message-77-sub", "--json")
    assert json.loads(shown.out)["payload"] == {"x": 7}
    assert cli.sub("cancel", "send_message-77-sub").code == 0
    assert cli.sub("cancel", "send_message-77-sub").code == 1


def test_subprocess_redis_unreachable_has_no_traceback(cli: Cli) -> None:
    """As a real process, unreachable Redis gives exit 3 and exactly one stderr line."""
    port = free_port()
    res = cli.sub("status", REMINDERD_REDIS_URL=f"redis://:pw@127.0.0.1:{port}/0")
    assert res.code == 3
    expected = f"reminderd: cannot reach Redis at redis://:***@127.0.0.1:{port}/0: Connection refused\n"
    assert res.err == expected


def test_subprocess_bad_input_and_version(cli: Cli) -> None:
    """As a real process, bad input exits 2 with its message, and --version prints the version."""
    res = cli.sub("schedule", "send_message-1-x", "--every", "1h", "--cron", "* * * * *")
    assert (res.code, res.err) == (2, "reminderd: --every and --cron cannot be combined\n")
    res = cli.sub("--version")
    assert res.code == 0
    assert res.out.startswith("reminderd ")


async def _run_once(state: Path) -> None:
    """Start and stop the embedded server in ``state``, as a daemon that ran there would."""
    async with EmbeddedRedis(state):
        pass


def test_embedded_redis_started_for_the_command_persists(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With the embedded Redis and its daemon stopped, a command runs its own server; the write persists."""
    state = Path(tempfile.mkdtemp(prefix="rd-cli-"))
    try:
        asyncio.run(_run_once(state))  # a daemon ran here before, and stopped
        config = tmp_path / "embedded.yaml"
        config.write_text(CONFIG + f"redis:\n  url: embedded\n  embedded:\n    dir: {state}\n")
        monkeypatch.delenv("REMINDERD_REDIS_URL", raising=False)
        monkeypatch.setenv("REMINDERD_CONFIG", str(config))
        cli = Cli(capsys, config, "embedded")
        assert cli("schedule", "send_message-1-x", "--in", "1h").code == 0
        assert not (state / "redis.sock").exists()  # stopped again after the command
        shown = cli("show", "send_message-1-x", "--json").json()
        assert isinstance(shown, dict)
        assert shown["key"] == "send_message-1-x"
    finally:
        shutil.rmtree(state, ignore_errors=True)


def test_run_with_missing_config_exits_2(cli: Cli, tmp_path: Path) -> None:
    """reminderd run hands over to the daemon entry, which refuses a missing config with exit 2."""
    res = cli.sub("run", "-c", str(tmp_path / "absent.yaml"))
    assert res.code == 2
    assert f"{tmp_path / 'absent.yaml'}: config file not found" in res.out + res.err


def test_show_and_list_mask_payloads_unless_revealed(cli: Cli) -> None:
    """show and list, as text and JSON, mask phone numbers and secret-named fields; --reveal shows them."""
    payload = '{"to": "+4915123456789", "password": "hunter2"}'
    wrote = cli("schedule", "send_message-1-x", "--in", "1h", "--payload", payload, "--json")
    assert wrote.code == 0, wrote.err
    masked = {"to": "+4915*******89", "password": "***"}
    assert wrote.json()["payload"] == masked  # type: ignore[index]
    assert cli("show", "send_message-1-x", "--json").json()["payload"] == masked  # type: ignore[index]
    assert cli("list", "--json").json()[0]["payload"] == masked  # type: ignore[index]
    text = cli("show", "send_message-1-x").out
    assert "+4915*******89" in text
    assert "hunter2" not in text
    revealed = cli("show", "send_message-1-x", "--json", "--reveal").json()
    assert revealed["payload"] == {"to": "+4915123456789", "password": "hunter2"}  # type: ignore[index]


def test_whitespace_in_keys_follows_the_documented_rule(cli: Cli) -> None:
    """A space inside a part is kept; whitespace at a part's edge or a tab is refused with exit 2."""
    inner = cli("schedule", "send_message-42-da ily", "--in", "1h", "--json")
    assert inner.code == 0, inner.err
    assert (inner.json()["user_id"], inner.json()["type"]) == ("42", "da ily")  # type: ignore[index]
    edge = cli("schedule", "send_message-42-daily ", "--in", "1h")
    assert (edge.code, edge.err) == (
        2, "reminderd: invalid key 'send_message-42-daily ': type has leading or trailing whitespace\n"
    )  # fmt: skip
    assert cli("schedule", "send_message-42-da\tily", "--in", "1h").code == 2
