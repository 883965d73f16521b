"""``redis.cluster``: the config (section and URL forms, bad and hostile values), ``redis.shards``,
and the clients and layout the daemon, CLI and API get from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException

from reminderd.api import Reminders
from reminderd.cli import main
from reminderd.config import describe, load_config_text
from reminderd.config.cluster import split_cluster_node
from reminderd.errors import ConfigError, RedisUnavailableError
from reminderd.storage.cluster import ClusterUnavailable, is_cluster, layout_for
from reminderd.storage.connection import make_client
from reminderd.storage.layout import Layout
from tests.redis_server import free_port


def test_section_and_url_forms_mean_the_same() -> None:
    """The section and the redis+cluster:// URL name one target, by the canonical URL."""
    section = load_config_text("redis: {cluster: {nodes: ['a:7000', '[::1]:7001']}}")
    url = load_config_text("redis: {url: 'redis+cluster://a:7000,[::1]:7001'}")
    assert section.redis.cluster == url.redis.cluster
    assert section.redis.url == url.redis.url == "redis+cluster://a:7000,[::1]:7001"
    assert url.redis.cluster is not None
    assert url.redis.cluster.addresses == [("a", 7000), ("::1", 7001)]
    tls = load_config_text("redis: {cluster: {nodes: ['a:7000'], tls: true}, password: pw}")
    assert tls.redis.url == "rediss+cluster://a:7000"
    assert tls.redis.password == "pw"  # credentials stay out of the URL


def test_check_config_output_loads_back() -> None:
    """What check-config prints for a cluster config (url and section both) is a valid config."""
    settings = load_config_text("redis: {cluster: {nodes: ['a:1', 'b:2'], tls: true}}")
    again = load_config_text(yaml.safe_dump({"redis": describe(settings)["redis"]}))
    assert again.redis == settings.redis


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "redis: {url: 'redis://h:6379/0', cluster: {nodes: ['a:1']}}",
            "url and cluster are mutually exclusive",
        ),
        ("redis: {url: embedded, cluster: {nodes: ['a:1']}}", "url and cluster are mutually exclusive"),
        ("redis: {url: 'redis+cluster://a:1', cluster: {nodes: ['b:1']}}", "mutually exclusive"),
        (
            "redis: {sentinel: {master: m, nodes: ['a:1']}, cluster: {nodes: ['a:1']}}",
            "sentinel and cluster are mutually exclusive",
        ),
        ("redis: {cluster: {nodes: []}}", "redis.cluster.nodes: list at least one cluster node"),
        ("redis: {cluster: {}}", "redis.cluster.nodes: Field required"),
        ("redis: {cluster: {nodes: 'a:1'}}", "redis.cluster.nodes"),
        ("redis: {cluster: {nodes: ['a']}}", "redis.cluster.nodes: nodes[0]: 'a' is not host:port"),
        ("redis: {cluster: {nodes: ['a:1', 'b']}}", "nodes[1]: 'b' is not host:port"),
        ("redis: {cluster: {nodes: ['a:0']}}", "the port must be a number from 1 to 65535"),
        ("redis: {cluster: {nodes: ['a:65536']}}", "the port must be a number from 1 to 65535"),
        ("redis: {cluster: {nodes: ['a:-1']}}", "the port must be a number from 1 to 65535"),
        ("redis: {cluster: {nodes: [':7000']}}", "is not host:port"),
        ("redis: {cluster: {nodes: ['::1:7000']}}", "is not host:port"),
        ("redis: {cluster: {nodes: ['a b:7000']}}", "is not host:port"),
        ("redis: {cluster: {nodes: ['a,b:7000']}}", "is not host:port"),
        ("redis: {cluster: {nodes: ['u@a:7000']}}", "is not host:port"),
        ("redis: {cluster: {nodes: ['a:1', 'a:1']}}", "a node is listed twice"),
        ("redis: {cluster: {nodes: [5]}}", "redis.cluster.nodes.0: Input should be a valid string"),
        ("redis: {cluster: {nodes: ['a:1'], tls: maybe}}", "redis.cluster.tls"),
        ("redis: {cluster: {nodes: ['a:1'], db: 1}}", "redis.cluster.db"),
        ("redis: {url: 'redis+cluster://'}", "list at least one cluster node"),
        ("redis: {url: 'redis+cluster://u:pw@a:1'}", "takes no credentials"),
        ("redis: {url: 'redis+cluster://a:1/3'}", "names no database"),
    ],
)
def test_bad_cluster_config_names_the_path(text: str, message: str) -> None:
    """A wrong cluster setting is one error that names its path and says what is wrong."""
    with pytest.raises(ConfigError, match=r"^<string>: redis") as caught:
        load_config_text(text)
    assert message in str(caught.value)


def test_too_many_seeds_are_refused() -> None:
    """More than 64 seed nodes is a typo, not a cluster."""
    nodes = ", ".join(f"'h{i}:7000'" for i in range(65))
    with pytest.raises(ConfigError, match="at most 64 seed nodes"):
        load_config_text(f"redis: {{cluster: {{nodes: [{nodes}]}}}}")


def test_environment_url_replaces_the_cluster_section(monkeypatch: pytest.MonkeyPatch) -> None:
    """$REMINDERD_REDIS_URL names the target even where the file configures a cluster."""
    monkeypatch.setenv("REMINDERD_REDIS_URL", "redis://127.0.0.1:6390/0")
    settings = load_config_text("redis: {cluster: {nodes: ['a:1']}}")
    assert settings.redis.cluster is None
    assert settings.redis.url == "redis://127.0.0.1:6390/0"


def test_split_cluster_node() -> None:
    """host:port, IPv6 in brackets and DNS names split into a pair."""
    assert split_cluster_node("10.0.0.1:7000") == ("10.0.0.1", 7000)
    assert split_cluster_node("[fe80::1]:7000") == ("fe80::1", 7000)
    assert split_cluster_node("redis-0.redis.svc:6379") == ("redis-0.redis.svc", 6379)


def test_store_clients_on_a_cluster_route_by_slot() -> None:
    """The daemon, CLI and API build their clients with make_client: the slot-routing one on
    Cluster, whose store is sharded; a single subscriber connection is not what a cluster needs."""
    settings = load_config_text("redis: {cluster: {nodes: ['127.0.0.1:7000']}}")
    client = make_client(settings.redis, settings.redis.url)
    assert is_cluster(client)
    layout = layout_for(settings, client)
    assert (layout.shards, layout.inline_triggers) == (16, False)
    with pytest.raises(ValueError, match="a subscriber per primary"):
        make_client(settings.redis, settings.redis.url, subscriber=True)
    plain = load_config_text("redis: {url: 'redis://127.0.0.1:6390/0'}")
    single = make_client(plain.redis, plain.redis.url)
    assert not is_cluster(single)
    assert layout_for(plain, single) == Layout.single("reminderd")


@pytest.mark.parametrize(
    ("text", "shards"),
    [
        ("redis: {cluster: {nodes: ['a:1']}}", 16),
        ("redis: {cluster: {nodes: ['a:1']}, shards: 3}", 3),
        ("redis: {url: 'redis+cluster://a:1', shards: 1024}", 1024),
        ("redis: {url: 'redis://h:1/0'}", 1),
        ("redis: {url: 'redis://h:1/0', shards: 1}", 1),
        ("redis: {sentinel: {master: m, nodes: ['a:1']}}", 1),
    ],
)
def test_shard_count_defaults_by_target(text: str, shards: int) -> None:
    """16 shards on Cluster unless redis.shards says otherwise; one anywhere else."""
    assert load_config_text(text).redis.shard_count == shards


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "redis: {url: 'redis://h:1/0', shards: 4}",
            "redis.shards: must be 1 or absent without redis.cluster",
        ),
        ("redis: {sentinel: {master: m, nodes: ['a:1']}, shards: 2}", "redis.shards: must be 1 or absent"),
        ("redis: {shards: 2}", "redis.shards: must be 1 or absent"),
        (
            "redis: {cluster: {nodes: ['a:1']}, shards: 0}",
            "redis.shards: Input should be greater than or equal to 1",
        ),
        ("redis: {cluster: {nodes: ['a:1']}, shards: -3}", "redis.shards: Input should be greater"),
        (
            "redis: {cluster: {nodes: ['a:1']}, shards: 1025}",
            "redis.shards: Input should be less than or equal to 1024",
        ),
        ("redis: {cluster: {nodes: ['a:1']}, shards: many}", "redis.shards: Input should be a valid integer"),
        ("redis: {cluster: {nodes: ['a:1']}, shards: 2.5}", "redis.shards"),
        ("redis: {cluster: {nodes: ['a:1']}, shards: [4]}", "redis.shards"),
        (
            "redis: {cluster: {nodes: ['a:1']}, wait_replicas: 1}",
            "redis.wait_replicas: is not supported with redis.cluster",
        ),
        ("redis: {url: 'redis+cluster://a:1', wait_replicas: 2}", "redis.wait_replicas: is not supported"),
    ],
)
def test_bad_shard_settings_name_the_path(text: str, message: str) -> None:
    """A wrong redis.shards (or WAIT on Cluster) is one error naming its path."""
    with pytest.raises(ConfigError, match=r"^<string>: redis") as caught:
        load_config_text(text)
    assert message in str(caught.value)


def test_cli_and_api_on_an_unreachable_cluster_exit_2_or_say_where(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A cluster nobody answers for: the CLI exits with the unreachable code naming the seeds,
    the API raises the same error."""
    cfg = tmp_path / "r.yaml"
    cfg.write_text(f"redis: {{cluster: {{nodes: ['127.0.0.1:{free_port()}']}}, connect_timeout: 200ms}}\n")
    code = main(["-c", str(cfg), "status"])
    err = capsys.readouterr().err
    assert code == RedisUnavailableError.exit_code, err
    assert "redis+cluster://127.0.0.1:" in err
    with pytest.raises(RedisUnavailableError, match="redis\\+cluster://"):
        Reminders.from_config(cfg)


async def test_an_unreachable_cluster_is_a_connection_error() -> None:
    """redis-py's RedisClusterException (no seed answers) reaches reminderd as a ConnectionError,
    which every loop that rides out a lost connection catches."""
    settings = load_config_text(f"redis: {{cluster: {{nodes: ['127.0.0.1:{free_port()}']}}}}")
    client = make_client(settings.redis, settings.redis.url)
    try:
        with pytest.raises(RedisConnectionError) as caught:
            await client.ping()
        assert isinstance(caught.value, ClusterUnavailable)
        assert isinstance(caught.value.__cause__, RedisClusterException)
        with pytest.raises(ClusterUnavailable):
            await _pipelined_get(client)
    finally:
        await client.aclose()


async def _pipelined_get(client: Any) -> None:
    async with client.pipeline(transaction=False) as pipe:
        pipe.get("a")
        await pipe.execute()
