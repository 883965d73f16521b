"""Load, interpolate and validate the YAML configuration.

String values may use ``${NAME}`` / ``${NAME:-default}`` (environment),
``${file:/path}`` (a secret file, trailing newline stripped) and ``${cred:name}``
(a systemd credential from ``$CREDENTIALS_DIRECTORY``). Interpolation happens on the
parsed values, never on the YAML text, so a variable cannot inject structure.
``REMINDERD_REDIS_URL`` overrides ``redis.url`` (and ``redis.sentinel``, ``redis.cluster``).

The file is ``-c``, else ``$REMINDERD_CONFIG``, else the first of ``./config/reminderd.yaml``
and ``/etc/reminderd/reminderd.yaml`` that exists, else the built-in defaults. A relative
``redis.embedded.dir`` is relative to the file's directory, never to the working directory,
so every command that reads the same file finds the same embedded Redis.
"""

from __future__ import annotations

import io
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
    "SYSTEM_PATH",
    "RetrySettings",
    "RuleSettings",
    "Settings",
    "describe",
    "load_config",
    "resolve_path",
]

DEFAULT_PATH = Path("config/reminderd.yaml")
SYSTEM_PATH = Path("/etc/reminderd/reminderd.yaml")  # where a host install keeps it (sudo drops env)
_KINDS = frozenset({"log", "webhook", "stream", "sms", "plugin"})
_VAR = re.compile(r"\$\{([^}]*)\}")


def resolve_path(cli_value: str | None) -> tuple[Path, bool]:
    """The config path and whether the user named it (else it is only the default)."""
    if cli_value:
        return Path(cli_value), True
    env = os.environ.get("REMINDERD_CONFIG")
    if env:
        return Path(env), True
    return next((p for p in (DEFAULT_PATH, SYSTEM_PATH) if p.exists()), DEFAULT_PATH), False


def load_config(path: str | Path | None = None, *, required: bool | None = None) -> Settings:
    """Read and validate a config file; a missing default file means built-in defaults."""
    file, named = resolve_path(str(path) if path is not None else None)
    must_exist = named if required is None else required
    if not file.exists():
        if must_exist:
            raise ConfigError(f"{file}: config file not found")
        return _validate({}, "<defaults>")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read: {exc}") from exc
    return load_config_text(text, str(file), base=file.absolute().parent)


def load_config_text(text: str, source: str = "<string>", *, base: Path | None = None) -> Settings:
    """Validate YAML text (for SIGHUP dry runs and tests); empty text means defaults.

    ``base`` is the directory a relative ``redis.embedded.dir`` is taken from (the file's).
    """
    try:
        stream = io.StringIO(text)
        stream.name = source  # so YAML's own marks name the file, not "<unicode string>"
        raw = yaml.load(stream, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    return _validate(raw, source, base)


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML that refuses duplicate keys, which PyYAML would silently let the last win."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, list | dict):
                continue  # unhashable: let the base class report it
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _anchor_state_dir(data: dict[str, Any], base: Path | None) -> None:
    """Make a relative ``redis.embedded.dir`` relative to the config file, not the cwd."""
    embedded = (data.get("redis") or {}).get("embedded") if isinstance(data.get("redis"), dict) else None
    if base is None or not isinstance(embedded, dict) or not isinstance(embedded.get("dir"), str):
        return
    if embedded["dir"] and not Path(embedded["dir"]).is_absolute():
        embedded["dir"] = str(base / embedded["dir"])


def _validate(raw: dict[str, Any], source: str, base: Path | None = None) -> Settings:
    data = _interpolate(raw, source, ())
    _anchor_state_dir(data, base)
    url = os.environ.get("REMINDERD_REDIS_URL")
    if url:
        redis_section = data.setdefault("redis", {})
        if not isinstance(redis_section, dict):
            raise ConfigError(f"{source}: redis: expected a mapping")
        redis_section["url"] = url
        redis_section.pop("sentinel", None)
        redis_section.pop("cluster", None)  # the variable names the target, whatever the file says
    try:
        # By alias only: ``sweep_interval_ms: 1000`` must be an unknown key, not 1000 seconds.
        return Settings.model_validate(data, by_alias=True, by_name=False)
    except ValidationError as exc:
        raise ConfigError(_format_errors(source, exc)) from exc


def _format_errors(source: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        parts = list(err["loc"])
        if len(parts) > 2 and parts[0] == "processors" and parts[2] in _KINDS:
            del parts[2]  # pydantic's union tag, noise for the user
        loc = ".".join(str(p) for p in parts)
        msg = _message(err["type"], err["msg"], err.get("ctx") or {})
        lines.append(f"{source}: {loc}: {msg}" if loc else f"{source}: {msg}")
    return "\n".join(lines)


def _message(kind: str, msg: str, ctx: dict[str, Any]) -> str:
    kinds = ", ".join(sorted(_KINDS))
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; see docs/config-reference.md)"
    if kind == "union_tag_invalid":
        return f"unknown processor type {ctx.get('tag')!r} (expected one of: {kinds})"
    if kind == "union_tag_not_found":
        return f"missing 'type' (one of: {kinds})"
    return msg.removeprefix("Value error, ")


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
        return _read_credential(expr[5:], where)
    name, sep, default = expr.partition(":-")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ConfigError(f"{where}: invalid variable reference ${{{expr}}}")
    found = os.environ.get(name)
    if found is not None and (found or not sep):
        return found
    if sep:
        return default
    raise ConfigError(f"{where}: environment variable {name} is not set (use ${{{name}:-default}})")


def _read_credential(name: str, where: str) -> str:
    """A systemd credential: a plain file name inside ``$CREDENTIALS_DIRECTORY``."""
    if not re.fullmatch(r"[A-Za-z0-9_.@-]+", name) or name in (".", ".."):
        raise ConfigError(f"{where}: invalid credential name {name!r}")
    base = os.environ.get("CREDENTIALS_DIRECTORY")
    if not base:
        raise ConfigError(f"{where}: ${{cred:{name}}} needs $CREDENTIALS_DIRECTORY (systemd LoadCredential=)")
    return _read_secret(Path(base) / name, where)


def _read_secret(file: Path, where: str) -> str:
    try:
        return file.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read secret file {file}: {exc.strerror}") from exc
