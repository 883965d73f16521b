"""One daemon on a real Redis Cluster, end to end: the CLI and the Python API schedule, raw keys
set on their owning nodes fire from those nodes' events, recurring reminders re-arm, a cancel
holds, and ``status``, ``list`` and ``show`` read the sharded store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from reminderd.api import When
from tests.cluster_topology import ClusterTopology
from tests.daemon_proc import wait_until
from tests.faults import Tally, api, webhook_config
from tests.faults.conftest import Daemons
from tests.http_receiver import HttpReceiver

SHARDS = 8


def cli(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``reminderd <args>`` on the test's config, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "reminderd", "--config", str(cfg), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def cluster_config(tmp_path: Path, topology: ClusterTopology, receiver: HttpReceiver, **daemon: str) -> Path:
    """A webhook config on the cluster's seed nodes, with ``SHARDS`` shards."""
    return webhook_config(
        tmp_path / "c.yaml",
        "redis+cluster://" + ",".join(topology.nodes),
        receiver,
        processors=("a",),
        daemon=daemon,
        redis={"url": "redis+cluster://" + ",".join(topology.nodes), "shards": SHARDS},
    )


def test_one_daemon_on_a_cluster_fires_each_reminder_once(
    tmp_path: Path, cluster: ClusterTopology, receiver: HttpReceiver, daemons: Daemons
) -> None:
    """API and CLI reminders, raw keys on every primary, a recurring one, a cancel: each as promised."""
    cfg = cluster_config(tmp_path, cluster, receiver)
    proc = daemons.start(cfg)
    started = proc.find("daemon.started")[0]
    assert started["canary"] == "ok", started
    url = "redis+cluster://" + ",".join(cluster.nodes)
    keys = [f"send_message-{i}-api" for i in range(40)]
    with api(cfg, url) as r:
        r.schedule_many((k, {"n": i}, When(in_=500 + 10 * i)) for i, k in enumerate(keys))
        r.schedule("send_message-every-tick", when=When(every=1000))
        r.schedule("send_message-gone-cancel", when=When(in_=1500))
        r.cancel("send_message-gone-cancel")
    done = cli(cfg, "schedule", "send_message-1-cli", "--in", "300ms", "--payload", '{"via": "cli"}')
    assert done.returncode == 0, done.stdout + done.stderr
    raw = [cluster.key_on(node, f"send_message-raw{i}-") for i, node in enumerate(cluster.primaries())]
    for key in raw:
        with cluster.node_for_key(key).client() as c:
            c.set(key, "1", px=400)
    tally = Tally(receiver).wait_covered([*keys, "send_message-1-cli", *raw], ["/a"], 20)
    wait_until(lambda: tally.update().calls[("/a", "send_message-every-tick")] >= 2, 15, "two ticks")
    with api(cfg, url) as r:
        r.cancel("send_message-every-tick")
    tally.update()
    wrong = {k: n for (_, k), n in tally.calls.items() if n != 1 and k != "send_message-every-tick"}
    assert not wrong, wrong  # every one-shot exactly once, nothing else
    assert ("/a", "send_message-gone-cancel") not in tally.calls
    assert len(tally.idempotency["send_message-every-tick"]) >= 2  # one occurrence per tick
    _status_list_show(cfg, cluster)


def _status_list_show(cfg: Path, cluster: ClusterTopology) -> None:
    """``status`` names every primary and its subscriber; ``list`` and ``show`` read the shards."""
    done = cli(cfg, "schedule", "send_message-later-x", "--in", "1h")
    assert done.returncode == 0, done.stderr
    status = cli(cfg, "status")
    assert status.returncode == 0, status.stdout + status.stderr
    for primary in cluster.primaries():
        assert primary.address in status.stdout, status.stdout
    assert "subscriber subscribed" in status.stdout, status.stdout
    listed = cli(cfg, "--json", "list")
    assert listed.returncode == 0, listed.stderr
    assert "send_message-later-x" in [row["key"] for row in json.loads(listed.stdout)]
    shown = cli(cfg, "show", "send_message-later-x")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "send_message-later-x" in shown.stdout


@pytest.mark.parametrize("stored", [4])
def test_a_different_shard_count_is_refused(
    tmp_path: Path, cluster: ClusterTopology, receiver: HttpReceiver, daemons: Daemons, stored: int
) -> None:
    """The CLI and the daemon on a namespace stored with another shard count stop with both numbers."""
    cfg = cluster_config(tmp_path, cluster, receiver)
    text = cfg.read_text().replace(f"shards: {SHARDS}", f"shards: {stored}")
    cfg.write_text(text.replace("namespace: reminderd", "") + "namespace: other\n")
    assert cli(cfg, "list").returncode == 0  # the first use stores the count
    cfg.write_text(cfg.read_text().replace(f"shards: {stored}", "shards: 5"))
    refused = cli(cfg, "list")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"holds {stored} shard(s)" in refused.stderr
    assert "configured for 5" in refused.stderr
    proc = daemons.start(cfg, wait_ready=False)
    assert proc.wait_exit(30) == 2
    failed = proc.wait_for("daemon.failed")[0]
    assert f"holds {stored} shard(s)" in failed["error"]
