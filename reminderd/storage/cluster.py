"""Clients for Redis Cluster: one that routes by slot, and plain ones for a single node.

The routing client (``redis.asyncio.cluster.RedisCluster``) learns the slot map from the
seed nodes and follows MOVED/ASK. After a connection error it drops the failed node and
reads the slot map again before the next attempt, so a failover is followed as soon as the
cluster has promoted a replica (about two node timeouts after a ``kill -9``). Keyspace events,
SCAN, CONFIG and INFO are per node: those go over a plain client on one node
(``node_client``), built with the same credentials, timeouts and TLS.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException

from reminderd.config.cluster import ClusterSettings, parse_cluster_url
from reminderd.config.model import RedisSettings, Settings
from reminderd.config.transport import TlsSettings
from reminderd.errors import ConfigError
from reminderd.storage.layout import Layout, check_shards

# A redirect or connection error re-reads the slot map and tries again, this many times.
CLUSTER_RETRIES = 6


def _tls_kwargs(tls: TlsSettings) -> dict[str, Any]:
    files = {"ssl_ca_certs": tls.ca_file, "ssl_certfile": tls.cert_file, "ssl_keyfile": tls.key_file}
    return {
        "ssl": True,
        "ssl_cert_reqs": "required" if tls.verify else "none",
        "ssl_check_hostname": tls.verify and tls.check_hostname,
        **{name: path for name, path in files.items() if path},
    }


def node_kwargs(settings: RedisSettings, spec: ClusterSettings, *, subscriber: bool) -> dict[str, Any]:
    """Connection arguments every node shares: credentials, timeouts, TLS (``redis.tls``)."""
    kwargs: dict[str, Any] = {
        "decode_responses": True,
        "encoding_errors": "surrogateescape",
        "socket_connect_timeout": settings.connect_timeout_ms / 1000,
        # The subscriber waits for messages indefinitely; a read timeout would drop it.
        "socket_timeout": None if subscriber else settings.socket_timeout_ms / 1000,
    }
    if settings.username:
        kwargs["username"] = settings.username
    if settings.password:
        kwargs["password"] = settings.password
    if spec.tls:
        kwargs.update(_tls_kwargs(settings.tls))
    return kwargs


class ClusterUnavailable(RedisConnectionError):
    """redis-py's ``RedisClusterException`` (no reachable seed, a slot without an owner while a
    failover is under way) as the connection error it is to reminderd: it is no ``RedisError``,
    so every loop that rides out a lost connection would otherwise die of it. The same for the
    ``RuntimeError`` of a write on a connection that the client's own slot-map refresh closed
    meanwhile, and the ``AttributeError`` of a node whose connection that refresh dropped
    (both seen in redis-py 8.1 while slots moved to an added node): the caller retries, as
    after any lost connection."""


def _lost(exc: RuntimeError | AttributeError) -> bool:
    """A redis-py race with its own slot-map refresh, not a bug of the caller."""
    text = str(exc)
    return "closed" in text if isinstance(exc, RuntimeError) else "'NoneType' object" in text


def _translated(exc: Exception) -> ClusterUnavailable:
    error = ClusterUnavailable(str(exc) or type(exc).__name__)
    error.__cause__ = exc
    return error


@contextlib.contextmanager
def _as_connection_errors() -> Iterator[None]:
    """redis-py's cluster failures as ``ClusterUnavailable`` (see there), for a command and a
    pipeline alike."""
    try:
        yield
    except RedisClusterException as exc:
        raise _translated(exc) from exc
    except (RuntimeError, AttributeError) as exc:
        if not _lost(exc):
            raise
        raise _translated(exc) from exc


class _Pipeline(ClusterPipeline):
    __slots__ = ()

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> list[Any]:
        with _as_connection_errors():
            return await super().execute(raise_on_error, allow_redirections)


class RoutingClient(RedisCluster):
    """``RedisCluster`` whose commands and pipelines fail with ``ClusterUnavailable`` where
    redis-py raises its ``RedisClusterException``."""

    __slots__ = ()

    async def initialize(
        self,
        additional_startup_nodes_info: list[tuple[str, int]] | None = None,
        last_failed_node_name: str | None = None,
    ) -> RoutingClient:
        """Read the slot map (first use, and a pipeline's start: ``async with pipeline()``)."""
        try:
            await super().initialize(additional_startup_nodes_info, last_failed_node_name)
        except RedisClusterException as exc:
            raise _translated(exc) from exc
        return self

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        with _as_connection_errors():
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> ClusterPipeline:
        if shard_hint:
            raise ValueError("shard_hint has no meaning on Cluster")
        return _Pipeline(self, transaction)  # type: ignore[abstract]  # as redis-py builds its own


def cluster_client(settings: RedisSettings, spec: ClusterSettings) -> RedisCluster:
    """The slot-routing client; no I/O happens here (the slot map is read on first use)."""
    return RoutingClient(
        startup_nodes=[ClusterNode(host, port) for host, port in spec.addresses],
        require_full_coverage=True,  # a slot without an owner is an error, not a silent skip
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), CLUSTER_RETRIES),
        max_connections=settings.max_connections,
        health_check_interval=15,
        **node_kwargs(settings, spec, subscriber=False),
    )


def node_client(
    settings: RedisSettings, spec: ClusterSettings, address: tuple[str, int], *, subscriber: bool = False
) -> aioredis.Redis:
    """A plain client on the one node at ``address`` (no retries: the topology watcher decides)."""
    host, port = address
    kwargs = node_kwargs(settings, spec, subscriber=subscriber)
    return aioredis.Redis(host=host, port=port, retry=Retry(NoBackoff(), 0), **kwargs)


def cluster_spec(settings: RedisSettings, url: str) -> ClusterSettings:
    """The cluster settings of ``url``: the configured ones if it is their URL, else what the
    URL itself says (``Reminders("redis+cluster://...", settings)``)."""
    if settings.cluster is not None and settings.cluster.url == url:
        return settings.cluster
    try:
        return ClusterSettings.model_validate(parse_cluster_url(url))
    except ValueError as exc:
        raise ConfigError(f"redis.url: {exc}") from None


def is_cluster(client: object) -> bool:
    """Whether ``client`` is the slot-routing client (``make_client`` of a cluster URL)."""
    return isinstance(client, RedisCluster)


def layout_for(settings: Settings, client: object) -> Layout:
    """The key layout for ``client``: on Cluster ``redis.shards`` tagged shards (default
    ``CLUSTER_SHARDS``) with trigger keys written outside the scripts, else today's one
    untagged shard. Decided by the client, which may name another target than the settings
    (``Reminders(url, settings)``)."""
    if not is_cluster(client):
        return Layout.single(settings.namespace)
    return Layout.cluster(settings.namespace, settings.redis.shard_count)


async def check_cluster_layout(settings: Settings, client: object) -> None:
    """On Cluster, the stored shard count must be the configured one (``check_shards``, which
    writes it at first use): a wrong count would place every reminder in another shard.
    Nothing at all on one Redis, whose commands stay as they always were."""
    if is_cluster(client):
        await check_shards(cast(aioredis.Redis, client), layout_for(settings, client))
