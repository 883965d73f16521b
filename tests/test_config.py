"""Loading, interpolating and validating the YAML configuration; every error names file and path."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from reminderd.config import DEFAULT_PATH, Settings, describe, load_config, load_config_text, resolve_path
from reminderd.config.model import DaemonSettings
from reminderd.config.processors import LogSettings, PluginSettings, StreamSettings, WebhookSettings
from reminderd.errors import ConfigError
from reminderd.models import Misfire

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "reminderd.yaml"
UNKNOWN = "unknown key (check the spelling; see docs/config-reference.md)"
KINDS = "log, plugin, sms, stream, webhook"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller's environment must not leak into what a config means."""
    for name in ("REMINDERD_REDIS_URL", "REMINDERD_CONFIG", "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)


def write(tmp_path: Path, text: str, name: str = "reminderd.yaml") -> Path:
    """Write ``text`` as a config file and return its path."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path) -> str:
    """The ConfigError message of loading ``path``."""
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


# --- the example file ------------------------------------------------------------------


def test_example_validates_as_is() -> None:
    """config/reminderd.yaml loads with the embedded Redis, the log processor and send_message."""
    settings = load_config(EXAMPLE)
    assert settings.redis.url == "embedded"
    assert settings.namespace == "reminderd"
    assert settings.processors == {"log": LogSettings(type="log", level="info")}
    assert settings.rules["send_message"].processors == ("log",)
    assert settings.rules["send_message"].misfire is Misfire.FIRE_ONCE
    assert settings.metrics.enabled is False
    assert settings.prefixes == ("send_message",)


def test_example_states_the_defaults() -> None:
    """Every value the example sets is the built-in default, so the example documents the defaults."""
    example = load_config(EXAMPLE).model_dump()
    defaults = Settings().model_dump()
    assert example == defaults


def test_example_lists_every_daemon_setting() -> None:
    """The daemon section names every DaemonSettings key, each with a comment line above it."""
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    start = lines.index("daemon:")
    section = lines[start + 1 : lines.index("", start)]
    keys = [line.split(":")[0].strip() for line in section if not line.lstrip().startswith("#")]
    expected = [field.alias or name for name, field in DaemonSettings.model_fields.items()]
    assert keys == expected
    for index, line in enumerate(section):
        if not line.lstrip().startswith("#"):
            assert section[index - 1].lstrip().startswith("# "), line


def test_example_commented_blocks_validate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The commented-out example processors and rule are valid once uncommented, secrets included."""
    text = EXAMPLE.read_text(encoding="utf-8")
    head, tail = text.split("\nprocessors:\n")
    setting = re.compile(r"^(\s*)# ( *(?:[A-Za-z_][\w-]*:.*|- .*))$")
    tail = "\n".join(setting.sub(r"\1\2", line) for line in tail.splitlines())
    secret = write(tmp_path, "push-secret\n", "push_api_key")
    tail = tail.replace("/run/secrets/push_api_key", str(secret))
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "crm_token").write_text("tok\n", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    settings = load_config(write(tmp_path, f"{head}\nprocessors:\n{tail}\n", "uncommented.yaml"))
    assert set(settings.processors) == {"log", "crm_webhook", "events", "push"}
    webhook = settings.processors["crm_webhook"]
    assert isinstance(webhook, WebhookSettings)
    assert str(webhook.url) == "https://crm.example.com/hooks/reminder"
    assert webhook.headers == {"Authorization": "Bearer tok"}
    assert isinstance(settings.processors["events"], StreamSettings)
    push = settings.processors["push"]
    assert isinstance(push, PluginSettings)
    assert push.path == "mycompany.reminders:PushProcessor"
    assert push.options == {"api_key": "push-secret"}
    digest = settings.rules["nightly_digest"]
    assert digest.processors == ("log", "crm_webhook")
    assert digest.quiet_hours is not None
    assert (digest.quiet_hours.start, digest.quiet_hours.end) == ("22:00", "07:00")
    assert digest.retry is not None
    assert digest.retry.max_attempts == 10
    assert settings.rules["send_message"].retry is None
    assert settings.retry.max_attempts == 5


# --- file handling ---------------------------------------------------------------------


def test_named_file_missing_is_an_error(tmp_path: Path) -> None:
    """``-c`` naming a file that does not exist fails instead of silently using defaults."""
    missing = tmp_path / "nope.yaml"
    assert config_error(missing) == f"{missing}: config file not found"


def test_env_named_file_missing_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """REMINDERD_CONFIG naming a missing file is as binding as ``-c``."""
    missing = tmp_path / "nope.yaml"
    monkeypatch.setenv("REMINDERD_CONFIG", str(missing))
    with pytest.raises(ConfigError, match=f"^{re.escape(str(missing))}: config file not found$"):
        load_config()


def test_default_file_missing_means_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without -c and without config/reminderd.yaml in the working directory, built-in defaults apply."""
    monkeypatch.chdir(tmp_path)
    assert load_config() == Settings()


def test_not_required_missing_means_defaults(tmp_path: Path) -> None:
    """``required=False`` lets a named but missing file fall back to defaults."""
    assert load_config(tmp_path / "nope.yaml", required=False) == Settings()


def test_default_file_is_read_when_present(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without -c, config/reminderd.yaml in the working directory is loaded."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config").mkdir()
    write(tmp_path / "config", "namespace: from_default\n")
    assert load_config().namespace == "from_default"


def test_resolve_path_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI value beats REMINDERD_CONFIG, which beats the default path."""
    assert resolve_path(None) == (DEFAULT_PATH, False)
    monkeypatch.setenv("REMINDERD_CONFIG", "/etc/reminderd.yaml")
    assert resolve_path(None) == (Path("/etc/reminderd.yaml"), True)
    assert resolve_path("mine.yaml") == (Path("mine.yaml"), True)


def test_system_config_is_the_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside a clone, /etc/reminderd/reminderd.yaml is the default (sudo drops REMINDERD_CONFIG)."""
    system = write(tmp_path, "namespace: from_etc\n", "system.yaml")
    monkeypatch.setattr("reminderd.config.SYSTEM_PATH", system)
    monkeypatch.chdir(tmp_path)
    assert resolve_path(None) == (system, False)
    assert load_config().namespace == "from_etc"
    (tmp_path / "config").mkdir()
    write(tmp_path / "config", "namespace: from_clone\n")
    assert load_config().namespace == "from_clone"


def test_relative_state_dir_is_relative_to_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative redis.embedded.dir is taken from the config file's directory, whatever the cwd."""
    (tmp_path / "etc").mkdir()
    path = write(tmp_path / "etc", "redis: {embedded: {dir: ../state}}\n")
    monkeypatch.chdir("/")
    assert load_config(path).redis.embedded.dir == str(tmp_path / "etc" / ".." / "state")
    absolute = write(tmp_path, "redis: {embedded: {dir: /srv/rd}}\n", "abs.yaml")
    assert load_config(absolute).redis.embedded.dir == "/srv/rd"


def test_directory_is_unreadable(tmp_path: Path) -> None:
    """A directory given as the config file is refused with the OS reason."""
    assert config_error(tmp_path) == f"{tmp_path}: cannot read: [Errno 21] Is a directory: '{tmp_path}'"


def test_not_utf8_is_unreadable(tmp_path: Path) -> None:
    """A config file that is not UTF-8 is refused, naming the file."""
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"namespace: caf\xe9\n")
    assert config_error(path).startswith(f"{path}: cannot read: 'utf-8' codec can't decode byte 0xe9")


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    """An empty (or comments-only) file is the built-in defaults, in a file as in text."""
    assert load_config(write(tmp_path, "# nothing yet\n")) == Settings()
    assert load_config_text("") == Settings()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "a: [\n",
            "invalid YAML: while parsing a flow node\n"
            "expected the node content, but found '<stream end>'\n"
            '  in "{f}", line 2, column 1',
        ),
        ("a: b\n  c: d\n", 'invalid YAML: mapping values are not allowed here\n  in "{f}", line 2, column 4'),
        (
            "daemon: {lease: 1s}\ndaemon: {lease: 2s}\n",
            'invalid YAML: while constructing a mapping\n  in "{f}", line 1, column 1\n'
            "found duplicate key 'daemon'\n"
            '  in "{f}", line 2, column 1',
        ),
        ("- a\n- b\n", "expected a mapping at the top level, got list"),
        ("42\n", "expected a mapping at the top level, got int"),
        ("just text\n", "expected a mapping at the top level, got str"),
    ],
)
def test_bad_yaml_names_the_file(tmp_path: Path, text: str, message: str) -> None:
    """Unparsable YAML, duplicate keys and a non-mapping top level are refused with the file's name."""
    path = write(tmp_path, text)
    assert config_error(path) == f"{path}: " + message.format(f=path)


def test_text_source_names_itself() -> None:
    """load_config_text (SIGHUP dry runs) puts the given source name in its errors."""
    with pytest.raises(ConfigError, match=r"^reload\.yaml: expected a mapping at the top level, got list$"):
        load_config_text("[1]", "reload.yaml")


# --- validation errors -----------------------------------------------------------------

PROC_LOG = "processors: {log: {type: log}}\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # unknown keys, at every depth
        ("bogus: 1", f"bogus: {UNKNOWN}"),
        ("daemon: {sweep_intervall: 1s}", f"daemon.sweep_intervall: {UNKNOWN}"),
        ("redis: {embedded: {socket: x}}", f"redis.embedded.socket: {UNKNOWN}"),
        ("daemon: {sweep_interval_ms: 1000}", f"daemon.sweep_interval_ms: {UNKNOWN}"),
        ("redis: {socket_timeout_ms: 5}", f"redis.socket_timeout_ms: {UNKNOWN}"),
        ("processors: {log: {type: log, timeout_ms: 5}}", f"processors.log.timeout_ms: {UNKNOWN}"),
        ("processors: {log: {type: log, colour: red}}", f"processors.log.colour: {UNKNOWN}"),
        (
            "processors: {w: {type: webhook, url: 'https://x', bogus: 1}}",
            f"processors.w.bogus: {UNKNOWN}",
        ),
        (
            PROC_LOG + "rules: {send_message: {processors: [log], retries: 3}}",
            f"rules.send_message.retries: {UNKNOWN}",
        ),
        # durations
        (
            "daemon: {sweep_interval: 1x}",
            "daemon.sweep_interval: invalid duration '1x': expected e.g. 500ms, 30s, 5m, 24h, 7d",
        ),
        ("daemon: {sweep_interval: -1s}", "daemon.sweep_interval: duration '-1s' must not be negative"),
        ("daemon: {lease: -5}", "daemon.lease: duration -5 must not be negative"),
        ("daemon: {sweep_interval: 0}", "daemon.sweep_interval: must be greater than zero"),
        ("daemon: {sweep_interval: 0ms}", "daemon.sweep_interval: must be greater than zero"),
        ("redis: {socket_timeout: 0.0001}", "redis.socket_timeout: must be greater than zero"),
        (
            "daemon: {sweep_interval: }",
            "daemon.sweep_interval: expected a duration such as 500ms, 30s, 5m or 24h, got NoneType",
        ),
        (
            "daemon: {sweep_interval: [1]}",
            "daemon.sweep_interval: expected a duration such as 500ms, 30s, 5m or 24h, got list",
        ),
        (
            "daemon: {sweep_interval: true}",
            "daemon.sweep_interval: expected a duration such as 500ms, 30s, 5m or 24h, got bool",
        ),
        ("daemon: {sweep_interval: .inf}", "daemon.sweep_interval: duration inf must be a finite number"),
        (
            "retry: {backoff: 1s5}",
            "retry.backoff: invalid duration '1s5': expected e.g. 500ms, 30s, 5m, 24h, 7d",
        ),
        (
            "processors: {log: {type: log, timeout: 5x}}",
            "processors.log.timeout: invalid duration '5x': expected e.g. 500ms, 30s, 5m, 24h, 7d",
        ),
        # wrong types and ranges
        ("daemon: []", "daemon: Input should be a valid dictionary or instance of DaemonSettings"),
        (
            "daemon: {sweep_batch: many}",
            "daemon.sweep_batch: Input should be a valid integer, unable to parse string as an integer",
        ),
        (
            "daemon: {sweep_batch: 1.5}",
            "daemon.sweep_batch: Input should be a valid integer, got a number with a fractional part",
        ),
        ("daemon: {sweep_batch: true}", "daemon.sweep_batch: expected a number, got a boolean"),
        ("daemon: {concurrency: 0}", "daemon.concurrency: Input should be greater than or equal to 1"),
        ("daemon: {instance_id: 5}", "daemon.instance_id: Input should be a valid string"),
        ("retry: {jitter: yes}", "retry.jitter: expected a number, got a boolean"),
        ("retry: {jitter: 2}", "retry.jitter: Input should be less than or equal to 1"),
        ("retry: {max_attempts: 0}", "retry.max_attempts: Input should be greater than or equal to 1"),
        (
            "metrics: {enabled: maybe}",
            "metrics.enabled: Input should be a valid boolean, unable to interpret input",
        ),
        ("metrics: {port: 70000}", "metrics.port: Input should be less than or equal to 65535"),
        (
            "limits: {payload_max_bytes: 1}",
            "limits.payload_max_bytes: Input should be greater than or equal to 2",
        ),
        ("logging: {level: loud}", "logging.level: Input should be 'debug', 'info', 'warning' or 'error'"),
        ("logging: {format: xml}", "logging.format: Input should be 'auto', 'json' or 'console'"),
        ("namespace: 'a b'", "namespace: String should match pattern '^[A-Za-z0-9_.:{}-]{1,64}$'"),
        ("namespace: [a]", "namespace: Input should be a valid string"),
        ("redis: {max_connections: 1}", "redis.max_connections: Input should be greater than or equal to 2"),
        # redis url
        (
            "redis: {url: 'http://localhost:6379'}",
            "redis.url: must be 'embedded' or start with redis://, "
            "rediss://, unix://, redis+sentinel:// or redis+cluster://, got 'http://localhost:6379'",
        ),
        (
            "redis: {url: 'http://u:hunter2@db'}",
            "redis.url: must be 'embedded' or start with redis://, "
            "rediss://, unix://, redis+sentinel:// or redis+cluster://, got 'http://u:***@db'",
        ),
        (
            "redis: {url: localhost}",
            "redis.url: must be 'embedded' or start with redis://, rediss://, unix://, redis+sentinel:// "
            "or redis+cluster://, got 'localhost'",
        ),
        ("redis: {url: 5}", "redis.url: Input should be a valid string"),
        # processors
        (
            "processors: {x: {type: carrier_pigeon}}",
            f"processors.x: unknown processor type 'carrier_pigeon' (expected one of: {KINDS})",
        ),
        ("processors: {x: {url: 'https://a'}}", f"processors.x: missing 'type' (one of: {KINDS})"),
        (
            "processors: {x: 5}",
            "processors.x: Input should be a valid dictionary or object to extract fields from",
        ),
        ("processors: {w: {type: webhook}}", "processors.w.url: Field required"),
        (
            "processors: {w: {type: webhook, url: 'ftp://x'}}",
            "processors.w.url: URL scheme should be 'http' or 'https'",
        ),
        ("processors: {s: {type: stream}}", "processors.s.stream: Field required"),
        (
            "processors: {p: {type: plugin, path: 'not a path'}}",
            "processors.p.path: String should match pattern '^[A-Za-z_][\\w.]*:[A-Za-z_]\\w*$'",
        ),
        # rules
        (
            "rules: {send_message: {processors: [sms]}}",
            "rules.send_message.processors: unknown processor 'sms' (defined: log)",
        ),
        (
            "processors: {a: {type: log}, b: {type: log}}\nrules: {r: {processors: [a, c]}}",
            "rules.r.processors: unknown processor 'c' (defined: a, b)",
        ),
        (
            "processors: {}\nrules: {r: {processors: [log]}}",
            "rules.r.processors: unknown processor 'log' (defined: none)",
        ),
        (
            "rules: {send_message: {processors: log}}",
            "rules.send_message.processors: Input should be a valid tuple",
        ),
        (
            "rules: {send_message: {processors: []}}",
            "rules.send_message.processors: Tuple should have at least 1 item after validation, not 0",
        ),
        ("rules: {send_message: {}}", "rules.send_message.processors: Field required"),
        (
            "processors: {'sms,log': {type: log}, log: {type: log}}",
            "processors.'sms,log': invalid processor name: use 1 to 64 letters, digits, '_', '-' or '.'",
        ),
        (
            'processors: {"a\\nb": {type: log}, log: {type: log}}',
            "processors.'a\\nb': invalid processor name: use 1 to 64 letters, digits, '_', '-' or '.'",
        ),
        (
            "processors: {'': {type: log}, log: {type: log}}",
            "processors.'': invalid processor name: use 1 to 64 letters, digits, '_', '-' or '.'",
        ),
        (
            "rules: {send_message: {processors: [log, log]}}",
            "rules.send_message.processors: 'log' is listed twice",
        ),
        ("rules: {}", "rules: at least one rule is required"),
        (
            "rules: {' x': {processors: [log]}}",
            "rules.' x': invalid rule name: prefix has leading or trailing whitespace",
        ),
        ("rules: {'---': {processors: [log]}}", "rules.'---': invalid rule name: prefix contains only '-'"),
        (
            'rules: {"a\\tb": {processors: [log]}}',
            "rules.'a\\tb': invalid rule name: prefix contains a control character",
        ),
        (
            "rules: {send_message: {processors: [log], misfire: often}}",
            "rules.send_message.misfire: Input should be 'fire_once', 'fire_all' or 'skip'",
        ),
        (
            "rules: {r: {processors: [log], quiet_hours: {start: '25:00', end: '07:00'}}}",
            "rules.r.quiet_hours.start: String should match pattern '^([01]\\d|2[0-3]):[0-5]\\d$'",
        ),
        (
            "rules: {r: {processors: [log], quiet_hours: {start: '22:00'}}}",
            "rules.r.quiet_hours.end: Field required",
        ),
        (
            "rules: {r: {processors: [log], quiet_hours: {start: '22:00', end: '07:00', "
            "default_tz: Mars/Base}}}",
            "rules.r.quiet_hours.default_tz: unknown time zone 'Mars/Base' (expected an IANA name such as "
            "Europe/Berlin)",
        ),
        (
            "rules: {r: {processors: [log], quiet_hours: {start: '22:00', end: '07:00', "
            "default_tz: '../x'}}}",
            "rules.r.quiet_hours.default_tz: unknown time zone '../x' (expected an IANA name such as "
            "Europe/Berlin)",
        ),
        (
            "rules: {r: {processors: [log], retry: {backoff: 0}}}",
            "rules.r.retry.backoff: must be greater than zero",
        ),
    ],
)
def test_invalid_values_name_file_and_path(tmp_path: Path, text: str, message: str) -> None:
    """Each invalid setting is refused with ``<file>: <dotted.path>: <reason>``."""
    path = write(tmp_path, text + "\n")
    assert config_error(path) == f"{path}: {message}"


def test_every_error_is_reported(tmp_path: Path) -> None:
    """Several mistakes give one line each, so one run shows everything to fix."""
    path = write(tmp_path, "daemon: {lease: 1x, bogus: 1}\nmetrics: {port: -1}\n")
    assert config_error(path).splitlines() == [
        f"{path}: daemon.lease: invalid duration '1x': expected e.g. 500ms, 30s, 5m, 24h, 7d",
        f"{path}: daemon.bogus: {UNKNOWN}",
        f"{path}: metrics.port: Input should be greater than or equal to 0",
    ]


def test_valid_values_are_converted(tmp_path: Path) -> None:
    """Durations become milliseconds, floats and compounds included; rules keep their order."""
    path = write(
        tmp_path,
        "daemon: {sweep_interval: 250ms, lease: 1.5, drain_timeout: 1m30s}\n"
        "rules: {b: {processors: [log]}, a: {processors: [log], misfire: skip}}\n",
    )
    settings = load_config(path)
    assert settings.daemon.sweep_interval_ms == 250
    assert settings.daemon.lease_ms == 1500
    assert settings.daemon.drain_timeout_ms == 90_000
    assert settings.prefixes == ("b", "a")
    assert settings.rules["a"].misfire is Misfire.SKIP


def test_settings_are_frozen() -> None:
    """Nothing past the loader can change a setting."""
    settings = load_config_text("namespace: x")
    with pytest.raises(ValueError, match="Instance is frozen"):
        settings.namespace = "y"  # type: ignore[misc]


# --- interpolation ---------------------------------------------------------------------


def test_env_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``${NAME}`` is replaced by the variable, also inside a longer string."""
    monkeypatch.setenv("RD_NS", "prod")
    monkeypatch.setenv("RD_HOST", "db.internal")
    path = write(tmp_path, "namespace: ${RD_NS}\nredis: {url: 'redis://${RD_HOST}:6380/1'}\n")
    settings = load_config(path)
    assert settings.namespace == "prod"
    assert settings.redis.url == "redis://db.internal:6380/1"


def test_env_unset(tmp_path: Path) -> None:
    """An unset variable without default is an error naming file, path and the fix."""
    path = write(tmp_path, "redis:\n  password: ${RD_UNSET_PW}\n")
    assert config_error(path) == (
        f"{path}: redis.password: environment variable RD_UNSET_PW is not set (use ${{RD_UNSET_PW:-default}})"
    )


def test_env_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``${NAME:-default}`` uses the default when NAME is unset or empty, else NAME."""
    path = write(tmp_path, "namespace: ${RD_NS:-fallback}\n")
    assert load_config(path).namespace == "fallback"
    monkeypatch.setenv("RD_NS", "")
    assert load_config(path).namespace == "fallback"
    monkeypatch.setenv("RD_NS", "given")
    assert load_config(path).namespace == "given"


def test_env_empty_without_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A variable set to the empty string without a default yields the empty string."""
    monkeypatch.setenv("RD_EMPTY", "")
    settings = load_config(write(tmp_path, "redis: {username: 'x${RD_EMPTY}y'}\n"))
    assert settings.redis.username == "xy"


def test_env_empty_default(tmp_path: Path) -> None:
    """``${NAME:-}`` is an explicit empty default."""
    assert load_config(write(tmp_path, "redis: {username: 'a${RD_NONE:-}b'}\n")).redis.username == "ab"


def test_env_value_is_typed_by_the_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An interpolated number or duration is validated by its field like a literal one."""
    monkeypatch.setenv("RD_PORT", "9500")
    monkeypatch.setenv("RD_SWEEP", "250ms")
    path = write(tmp_path, "metrics: {port: '${RD_PORT}'}\ndaemon: {sweep_interval: '${RD_SWEEP}'}\n")
    settings = load_config(path)
    assert settings.metrics.port == 9500
    assert settings.daemon.sweep_interval_ms == 250
    monkeypatch.setenv("RD_PORT", "ninety")
    assert config_error(path) == (
        f"{path}: metrics.port: Input should be a valid integer, unable to parse string as an integer"
    )


@pytest.mark.parametrize("expr", ["1ABC", "A-B", "", "A B", ":-x"])
def test_invalid_variable_reference(tmp_path: Path, expr: str) -> None:
    """A malformed ``${...}`` is an error, not left in place."""
    path = write(tmp_path, f"namespace: 'n${{{expr}}}'\n")
    assert config_error(path) == f"{path}: namespace: invalid variable reference ${{{expr}}}"


def test_only_braced_references_interpolate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``$NAME`` without braces and non-string values are taken literally."""
    monkeypatch.setenv("HOME", "/home/x")
    settings = load_config(write(tmp_path, "redis: {username: '$HOME'}\nmetrics: {port: 9464}\n"))
    assert settings.redis.username == "$HOME"
    assert settings.metrics.port == 9464


def test_error_path_inside_lists(tmp_path: Path) -> None:
    """An interpolation error inside a list names the item's index."""
    path = write(tmp_path, "rules: {send_message: {processors: [log, '${RD_NOPE}']}}\n")
    assert config_error(path) == (
        f"{path}: rules.send_message.processors.1: environment variable RD_NOPE is not set "
        "(use ${RD_NOPE:-default})"
    )


def test_interpolation_cannot_inject_structure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A variable holding YAML stays one string: it cannot add keys, rules or list items."""
    monkeypatch.setenv("RD_EVIL", "x\nnamespace: pwned\nrules: {}")
    monkeypatch.setenv("RD_LIST", "log, evil")
    settings = load_config(write(tmp_path, "redis: {username: '${RD_EVIL}'}\n"))
    assert settings.redis.username == "x\nnamespace: pwned\nrules: {}"
    assert settings.namespace == "reminderd"
    assert settings.prefixes == ("send_message",)
    path = write(tmp_path, "rules: {send_message: {processors: ['${RD_LIST}']}}\n")
    assert config_error(path) == (
        f"{path}: rules.send_message.processors: unknown processor 'log, evil' (defined: log)"
    )


def test_keys_are_not_interpolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only values interpolate; a ``${...}`` in a key is an unknown key."""
    monkeypatch.setenv("RD_KEY", "namespace")
    path = write(tmp_path, "'${RD_KEY}': x\n")
    assert config_error(path) == f"{path}: ${{RD_KEY}}: {UNKNOWN}"


def test_file_secret(tmp_path: Path) -> None:
    """``${file:/path}`` reads a secret file and strips its trailing newline only."""
    secret = write(tmp_path, " s3cret pass \r\n\n", "pw")
    path = write(tmp_path, f"redis: {{password: '${{file:{secret}}}'}}\n")
    assert load_config(path).redis.password == " s3cret pass "


def test_file_secret_missing(tmp_path: Path) -> None:
    """A missing secret file is an error naming the config, the path and the secret file."""
    secret = tmp_path / "absent"
    path = write(tmp_path, f"redis: {{password: '${{file:{secret}}}'}}\n")
    assert config_error(path) == (
        f"{path}: redis.password: cannot read secret file {secret}: No such file or directory"
    )


def test_cred_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``${cred:name}`` reads $CREDENTIALS_DIRECTORY/name, as systemd LoadCredential= provides."""
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "redis_password").write_text("from-systemd\n", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    path = write(tmp_path, "redis: {password: '${cred:redis_password}'}\n")
    assert load_config(path).redis.password == "from-systemd"


def test_cred_without_credentials_directory(tmp_path: Path) -> None:
    """``${cred:name}`` outside systemd says that $CREDENTIALS_DIRECTORY is needed."""
    path = write(tmp_path, "redis: {password: '${cred:redis_password}'}\n")
    assert config_error(path) == (
        f"{path}: redis.password: ${{cred:redis_password}} needs $CREDENTIALS_DIRECTORY "
        "(systemd LoadCredential=)"
    )


def test_cred_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A credential absent from the directory is an error naming the file it looked for."""
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    path = write(tmp_path, "redis: {password: '${cred:nope}'}\n")
    assert config_error(path) == (
        f"{path}: redis.password: cannot read secret file {tmp_path / 'nope'}: No such file or directory"
    )


@pytest.mark.parametrize("name", ["../etc/passwd", "a/b", "..", "", "x y"])
def test_cred_name_cannot_escape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """A credential name is a plain file name: no path separators, no ``..``."""
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    path = write(tmp_path, f"redis: {{password: '${{cred:{name}}}'}}\n")
    assert config_error(path) == f"{path}: redis.password: invalid credential name {name!r}"


def test_redis_url_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """REMINDERD_REDIS_URL replaces redis.url, with or without a redis section, and is validated."""
    monkeypatch.setenv("REMINDERD_REDIS_URL", "redis://10.0.0.5:6379/2")
    assert load_config(EXAMPLE).redis.url == "redis://10.0.0.5:6379/2"
    assert load_config(write(tmp_path, "namespace: x\n")).redis.url == "redis://10.0.0.5:6379/2"
    monkeypatch.setenv("REMINDERD_REDIS_URL", "mysql://db")
    path = write(tmp_path, "redis: {url: embedded}\n")
    assert config_error(path) == (
        f"{path}: redis.url: must be 'embedded' or start with redis://, rediss://, unix://, "
        "redis+sentinel:// or redis+cluster://, got 'mysql://db'"
    )


def test_redis_url_env_override_needs_a_mapping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the override set, a redis section that is not a mapping is reported, not crashed on."""
    monkeypatch.setenv("REMINDERD_REDIS_URL", "redis://h")
    path = write(tmp_path, "redis: [1]\n")
    assert config_error(path) == f"{path}: redis: expected a mapping"


def test_empty_redis_url_env_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty REMINDERD_REDIS_URL does not override the file."""
    monkeypatch.setenv("REMINDERD_REDIS_URL", "")
    assert load_config(EXAMPLE).redis.url == "embedded"


# --- describe --------------------------------------------------------------------------


def test_describe_masks_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """describe() hides passwords, tokens, auth headers, secret options and URL passwords."""
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "redis_password").write_text("pw-1\n", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    monkeypatch.setenv("RD_TOKEN", "tok-2")
    path = write(
        tmp_path,
        "redis: {url: 'redis://app:pw-3@db:6379/0', password: '${cred:redis_password}'}\n"
        "processors:\n"
        "  log: {type: log}\n"
        "  auth_hook:\n"
        "    type: webhook\n"
        "    url: 'https://u:pw-4@hooks.example.com/x'\n"
        "    headers: {Authorization: 'Bearer ${RD_TOKEN}', X-Api-Key: k-5, X-Trace: visible}\n"
        "  p: {type: plugin, path: 'm:C', options: {api_key: k-6, secret: {nested: k-7}, region: eu}}\n"
        "rules: {send_message: {processors: [log, auth_hook, p]}}\n",
    )
    data = describe(load_config(path))
    text = repr(data)
    for secret in ("pw-1", "tok-2", "pw-3", "pw-4", "k-5", "k-6", "k-7"):
        assert secret not in text
    assert data["redis"]["password"] == "***"
    assert data["redis"]["url"] == "redis://app:***@db:6379/0"
    hook = data["processors"]["auth_hook"]
    assert hook["type"] == "webhook"
    assert hook["url"] == "https://u:***@hooks.example.com/x"
    assert hook["headers"] == {"Authorization": "***", "X-Api-Key": "***", "X-Trace": "visible"}
    assert data["processors"]["p"]["options"] == {
        "api_key": "***",
        "secret": {"nested": "***"},
        "region": "eu",
    }


def test_describe_of_example_round_trips(tmp_path: Path) -> None:
    """describe() uses the YAML keys and human durations, so its output is itself a valid config."""
    data = describe(load_config(EXAMPLE))
    assert data["daemon"]["sweep_interval"] == "1s"
    assert data["daemon"]["misfire_grace"] == "1m"
    assert data["redis"]["password"] is None
    reloaded = load_config(write(tmp_path, yaml.safe_dump(data), "described.yaml"))
    assert reloaded == load_config(EXAMPLE)
