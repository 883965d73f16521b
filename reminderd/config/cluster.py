"""``redis.cluster``: the seed nodes of a Redis Cluster; the client learns the rest from them.

Given as a section (``nodes``, optional ``tls``) or as one URL,
``redis+cluster://host:port,host:port`` (``rediss+cluster://`` with TLS). ``redis.username``,
``redis.password`` and ``redis.tls`` apply to every node: a cluster has one ACL and one
certificate authority for all its members. Once validated, ``redis.url`` is the canonical
URL (``ClusterSettings.url``, no credentials), so every message that names "where Redis is"
names the seed nodes.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, ValidationInfo, field_validator

from reminderd.config.base import Int, Strict

CLUSTER_SCHEME = "redis+cluster://"
CLUSTER_TLS_SCHEME = "rediss+cluster://"
CLUSTER_SCHEMES = (CLUSTER_SCHEME, CLUSTER_TLS_SCHEME)
MAX_SEEDS = 64  # more seeds than any cluster needs: the client discovers every other node
CLUSTER_SHARDS = 16  # the default shard count on Cluster: 10 M reminders are 625 k a shard
MAX_SHARDS = 1024  # every sweep asks each shard: past this the sweep costs more than a shard saves


def split_cluster_node(node: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:7000`` for IPv6; the port is required) as a pair; ValueError if not."""
    host, sep, port = node.rpartition(":")
    if not sep or not host or (":" in host and not (host.startswith("[") and host.endswith("]"))):
        raise ValueError(f"{node!r} is not host:port")
    host = host.removeprefix("[").removesuffix("]")
    if not host or any(ch.isspace() or ch in ",/@[]" for ch in host):
        raise ValueError(f"{node!r} is not host:port")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{node!r}: the port must be a number from 1 to 65535")
    return host, int(port)


class ClusterSettings(Strict):
    """Seed nodes (any members: primaries or replicas) and whether they speak TLS."""

    nodes: tuple[str, ...]
    tls: bool = False

    @field_validator("nodes")
    @classmethod
    def _check_nodes(cls, nodes: tuple[str, ...]) -> tuple[str, ...]:
        if not nodes:
            raise ValueError("list at least one cluster node, as host:port")
        if len(nodes) > MAX_SEEDS:
            raise ValueError(f"at most {MAX_SEEDS} seed nodes: the client discovers the others")
        for index, node in enumerate(nodes):
            try:
                split_cluster_node(node)
            except ValueError as exc:
                raise ValueError(f"nodes[{index}]: {exc}") from None
        if len(set(nodes)) != len(nodes):
            raise ValueError("a node is listed twice")
        return nodes

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The seeds as (host, port) pairs, in the configured order."""
        return [split_cluster_node(node) for node in self.nodes]

    @property
    def url(self) -> str:
        """The canonical ``redis+cluster://`` URL, without credentials (safe to log)."""
        return f"{CLUSTER_TLS_SCHEME if self.tls else CLUSTER_SCHEME}{','.join(self.nodes)}"


def parse_cluster_url(url: str) -> dict[str, Any]:
    """The ``redis.cluster`` section a ``redis+cluster://`` URL stands for (validated later).

    Credentials and a database have no place in it: a cluster has only database 0, and the
    credentials are ``redis.username``/``redis.password`` (kept out of URLs that get logged).
    """
    tls = url.startswith(CLUSTER_TLS_SCHEME)
    rest = url.removeprefix(CLUSTER_TLS_SCHEME if tls else CLUSTER_SCHEME)
    if "@" in rest:
        raise ValueError("a redis+cluster:// URL takes no credentials: set redis.username and redis.password")
    if "/" in rest.rstrip("/"):
        raise ValueError("a redis+cluster:// URL names no database: a cluster has database 0 only")
    return {"nodes": [n for n in rest.rstrip("/").split(",") if n], "tls": tls}


def with_cluster_section(data: Any) -> Any:
    """The raw ``redis`` section with a ``redis+cluster://`` URL also given as ``cluster``.

    Both at once are an error unless they name the same nodes: that is what ``check-config``
    prints, and pasted back it must load.
    """
    if not isinstance(data, dict):
        return data
    url, section = data.get("url"), data.get("cluster")
    if section is not None and data.get("sentinel") is not None:
        raise ValueError("sentinel and cluster are mutually exclusive: set one of them")
    if not isinstance(url, str) or not url.startswith(CLUSTER_SCHEMES):
        if section is not None and "url" in data:
            raise ValueError("url and cluster are mutually exclusive: set one of them")
        return data
    parsed = parse_cluster_url(url)
    if section is None:
        return {**data, "cluster": parsed}
    same = isinstance(section, dict) and list(section.get("nodes") or []) == parsed["nodes"]
    if not same or bool(section.get("tls", False)) != parsed["tls"]:
        raise ValueError("url and cluster are mutually exclusive: set one of them")
    return data


def check_shard_setting(shards: int | None, info: ValidationInfo) -> int | None:
    """``redis.shards`` as given, checked: any count on Cluster, 1 or absent elsewhere (one
    server holds one shard; its keys carry no hash tag)."""
    if info.data.get("cluster") is None and shards not in (None, 1):
        raise ValueError(
            f"must be 1 or absent without redis.cluster, got {shards}: "
            "only a cluster spreads reminderd's keys over shards"
        )
    return shards


def check_wait_on_cluster(replicas: int, info: ValidationInfo) -> int:
    """``redis.wait_replicas`` is refused on Cluster: ``WAIT`` counts the writes of its own
    connection, and the routing client sends a keyless command to an arbitrary node, not to
    the one that ran the claim (so it would wait for nothing, or time out every write)."""
    if info.data.get("cluster") is not None and replicas:
        raise ValueError(
            "is not supported with redis.cluster: WAIT must run on the connection that took the "
            "write, which the cluster client does not guarantee; leave it 0 on Cluster"
        )
    return replicas


# The fields of ``redis`` checked against ``redis.cluster`` (declared before them).
ShardCount = Annotated[Int | None, AfterValidator(check_shard_setting)]
WaitReplicas = Annotated[Int, AfterValidator(check_wait_on_cluster)]
