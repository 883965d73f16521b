"""Load, interpolate and validate the YAML configuration.

String values may use ``${NAME}`` / ``${NAME:-default}`` (environment),
``${file:/path}`` (a secret file, trailing newline stripped) and ``${cred:name}``
(a systemd credential from ``$CREDENTIALS_DIRECTORY``). Interpolation happens on the
parsed values, never on the YAML text, so a variable cannot inject structure.
``REMINDERD_REDIS_URL`` overrides ``redis.url``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from reminderd.config.model import RetrySettings, RuleSettings, Settings, describe
from reminderd.errors import ConfigError

__all__ = [
    "DEFAULT_PATH",
    "RetrySettings",
    "RuleSettings",
    "Settings",
    "describe",
    "load_config",
    "resolve_path",
]

DEFAULT_PATH = Path("config/reminderd.yaml")
_KINDS = frozenset({"log", "webhook", "stream", "sms", "plugin"})
_VAR = re.compile(r"\$\{([^}]*)\}")


def resolve_path(cli_value: str | None) -> tuple[Path, bool]:
    """The config path and whether the user named it (else it is only the default)."""
    if cli_value:
        return Path(cli_value), True
    env = os.environ.get("REMINDERD_CONFIG")
    if env:
        return Path(env), True
    return DEFAULT_PATH, False


def load_config(path: str | Path | None = None, *, required: bool | None = None) -> Settings:
    """Read and validate a config file; a missing default file means built-in defaults."""
    file, named = resolve_path(str(path) if path is not None else None)
    must_exist = named if required is None else required
    if not file.exists():
        if must_exist:
            raise ConfigError(f"{file}: config file not found")
        return _validate({}, "<defaults>")
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: invalid YAML: {exc}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: expected a mapping at the top level, got {type(raw).__name__}")
    return _validate(raw, str(file))


def load_config_text(text: str, source: str = "<string>") -> Settings:
    """Validate YAML text (for SIGHUP dry runs and tests)."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    return _validate(raw, source)


def _validate(raw: dict[str, Any], source: str) -> Settings:
    data = _interpolate(raw, source, ())
    url = os.environ.get("REMINDERD_REDIS_URL")
    if url:
        redis_section = data.setdefault("redis", {})
        if not isinstance(redis_section, dict):
            raise ConfigError(f"{source}: redis: expected a mapping")
        redis_section["url"] = url
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(source, exc)) from exc


def _format_errors(source: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        parts = list(err["loc"])
        if len(parts) > 2 and parts[0] == "processors" and parts[2] in _KINDS:
            del parts[2]  # pydantic's union tag, noise for the user
        loc = ".".join(str(p) for p in parts) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see config/reminderd.yaml)"
        lines.append(f"{source}: {loc}: {msg}")
    return "\n".join(lines)


def _interpolate(value: Any, source: str, path: tuple[str, ...]) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, source, (*path, str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, source, (*path, str(i))) for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:
        return _VAR.sub(lambda m: _resolve(m.group(1), source, path), value)
    return value


def _resolve(expr: str, source: str, path: tuple[str, ...]) -> str:
    where = f"{source}: {'.'.join(path)}"
    if expr.startswith("file:"):
        return _read_secret(Path(expr[5:]), where)
    if expr.startswith("cred:"):
        base = os.environ.get("CREDENTIALS_DIRECTORY")
        if not base:
            raise ConfigError(f"{where}: ${{{expr}}} needs $CREDENTIALS_DIRECTORY (systemd LoadCredential=)")
        return _read_secret(Path(base) / expr[5:], where)
    name, sep, default = expr.partition(":-")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ConfigError(f"{where}: invalid variable reference ${{{expr}}}")
    found = os.environ.get(name)
    if found is not None and (found or not sep):
        return found
    if sep:
        return default
    raise ConfigError(f"{where}: environment variable {name} is not set (use ${{{name}:-default}})")


def _read_secret(file: Path, where: str) -> str:
    try:
        return file.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read secret file {file}: {exc.strerror}") from exc
