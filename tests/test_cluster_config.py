"""``redis.cluster``: the config (section and URL forms, bad and hostile values) and the refusal
of start-up until reminderd's keys are sharded."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from reminderd.api import Reminders
from reminderd.cli import main
from reminderd.config import describe, load_config_text
from reminderd.config.cluster import split_cluster_node
from reminderd.errors import ConfigError
from reminderd.storage.cluster import NOT_COMPLETE
from reminderd.storage.connection import make_client


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


def test_store_clients_refuse_a_cluster_until_it_is_sharded() -> None:
    """The daemon, CLI and API build their clients with make_client: one clear refusal."""
    settings = load_config_text("redis: {cluster: {nodes: ['127.0.0.1:7000']}}")
    with pytest.raises(ConfigError) as caught:
        make_client(settings.redis, settings.redis.url)
    assert str(caught.value) == NOT_COMPLETE
    assert "Redis Cluster support is not complete in this version" in NOT_COMPLETE


def test_cli_and_api_refuse_a_cluster_config_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """status (as every command) and Reminders.from_config stop with the one refusal, exit code 2."""
    cfg = tmp_path / "r.yaml"
    cfg.write_text("redis: {cluster: {nodes: ['127.0.0.1:7000']}}\n")
    assert main(["-c", str(cfg), "status"]) == 2
    assert "Redis Cluster support is not complete in this version" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="not complete in this version"):
        Reminders.from_config(cfg)
