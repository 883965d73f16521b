"""``redis.sentinel``: reach the primary that Redis Sentinel names, and follow it at a failover.

Given either as a section (``master``, ``nodes``, credentials) or as one URL,
``redis+sentinel://[user:password@]host:port,host:port/master[/db]``; the URL's credentials are
the data nodes' (the sentinels' own go in ``sentinel_username``/``sentinel_password``). Once
validated, ``redis.url`` is the canonical URL (``SentinelSettings.url``, no credentials), so
every message that names "where Redis is" names the sentinels and the master.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from pydantic import Field, field_validator

from reminderd.config.base import Strict

SENTINEL_SCHEME = "redis+sentinel://"
DEFAULT_SENTINEL_PORT = 26379


def split_node(node: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:26379`` for IPv6; no port: 26379) as a pair; ValueError if malformed."""
    host, sep, port = node.rpartition(":")
    if not sep or (host.startswith("[") != host.endswith("]")) or (":" in host and not host.startswith("[")):
        host, port = node, str(DEFAULT_SENTINEL_PORT)
    host = host.removeprefix("[").removesuffix("]")
    if not host or any(ch.isspace() or ch in ",/@" for ch in host):
        raise ValueError(f"{node!r} is not host:port")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{node!r}: the port must be a number from 1 to 65535")
    return host, int(port)


class SentinelSettings(Strict):
    """The sentinels to ask, the master's name there, and who we are to each side."""

    master: str = Field(min_length=1, max_length=256, pattern=r"^[^\s/,@]+$")
    nodes: tuple[str, ...]
    db: int = Field(0, ge=0, strict=True)  # strict: a boolean is a typo, not 0 or 1
    username: str | None = None  # of the data nodes (default: redis.username)
    password: str | None = None  # of the data nodes (default: redis.password)
    sentinel_username: str | None = None  # of the sentinels themselves (ACL on the sentinels)
    sentinel_password: str | None = None

    @field_validator("nodes")
    @classmethod
    def _check_nodes(cls, nodes: tuple[str, ...]) -> tuple[str, ...]:
        if not nodes:
            raise ValueError("list at least one sentinel, as host:port")
        for index, node in enumerate(nodes):
            try:
                split_node(node)
            except ValueError as exc:
                raise ValueError(f"nodes[{index}]: {exc}") from None
        if len(set(nodes)) != len(nodes):
            raise ValueError("a sentinel is listed twice")
        return nodes

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The sentinels as (host, port) pairs, in the configured order."""
        return [split_node(node) for node in self.nodes]

    @property
    def url(self) -> str:
        """The canonical ``redis+sentinel://`` URL, without credentials (safe to log)."""
        return f"{SENTINEL_SCHEME}{','.join(self.nodes)}/{self.master}/{self.db}"


def parse_sentinel_url(url: str) -> dict[str, Any]:
    """The ``redis.sentinel`` section a ``redis+sentinel://`` URL stands for (validated later)."""
    rest = url.removeprefix(SENTINEL_SCHEME)
    auth, at, rest = rest.rpartition("@") if "@" in rest else ("", "", rest)
    hosts, _, path = rest.partition("/")
    master, _, db = path.strip("/").partition("/")
    if not master:
        raise ValueError(
            "a redis+sentinel:// URL names the master: redis+sentinel://host:port,host:port/mymaster/0"
        )
    section: dict[str, Any] = {"master": unquote(master), "nodes": [n for n in hosts.split(",") if n]}
    if db:
        if not db.isdigit():
            raise ValueError(f"the database in a redis+sentinel:// URL must be a number, got {db!r}")
        section["db"] = int(db)
    if at:
        user, colon, password = auth.partition(":")
        if user:
            section["username"] = unquote(user)
        if colon:
            section["password"] = unquote(password)
    return section


def with_sentinel_section(data: Any) -> Any:
    """The raw ``redis`` section with a ``redis+sentinel://`` URL also given as ``sentinel``.

    Both at once are an error, unless they name the same target without credentials in the
    URL: that is what ``check-config`` prints, and pasted back it must load.
    """
    url = data.get("url") if isinstance(data, dict) else None
    if not isinstance(url, str) or not url.startswith(SENTINEL_SCHEME):
        return data
    section, parsed = data.get("sentinel"), parse_sentinel_url(url)
    if section is None:
        return {**data, "sentinel": parsed}
    if not _same_target(section, parsed):
        raise ValueError("url and sentinel are mutually exclusive: set one of them")
    return data


def _same_target(section: Any, parsed: dict[str, Any]) -> bool:
    """True if a sentinel section names what a credential-free sentinel URL names."""
    if not isinstance(section, dict) or "username" in parsed or "password" in parsed:
        return False
    nodes = section.get("nodes")
    return (
        section.get("master") == parsed["master"]
        and isinstance(nodes, list | tuple)
        and list(nodes) == parsed["nodes"]
        and section.get("db", 0) == parsed.get("db", 0)
    )
