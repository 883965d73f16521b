"""``status`` and the doctor on Cluster: every node asked on its own, findings per node, clock skew."""

from __future__ import annotations

from reminderd.api.status import align
from reminderd.api.topology import cluster_topology_of, topology_rows
from reminderd.storage.cluster_facts import NodeFacts, cluster_findings
from reminderd.storage.server import required_flags
from tests.cluster_topology import ClusterTopology
from tests.cluster_watching import cluster_settings, watching


async def test_status_shows_every_node_and_the_doctor_runs_on_each(cluster: ClusterTopology) -> None:
    """Primaries with slots, replicas with their link, flags and version per node; findings named by node."""
    settings = cluster_settings(cluster)
    topology, found = await cluster_topology_of(settings.redis, required_flags(True))
    primaries = {p.address for p in cluster.primaries()}
    assert topology.kind == "cluster"
    assert {n.address for n in topology.nodes if n.role == "master"} == primaries
    assert len([n for n in topology.nodes if n.role == "replica"]) == 3
    for node in topology.nodes:
        assert node.error is None
        assert node.version.startswith(("Redis ", "Valkey "))
        assert node.offset_ms is not None
        assert abs(node.offset_ms) < 1000
        if node.role == "replica":
            assert node.primary in primaries
            assert node.link == "up"
    for address in primaries:  # the harness gives no flags and no persistence
        assert f"{address}: no persistence (no AOF, no RDB): a Redis restart loses every reminder" in found
        assert any(line.startswith(f"{address}: notify-keyspace-events is ''") for line in found)
    assert not any("clocks differ" in line for line in found)
    lines = align(topology_rows(topology))
    assert lines[0].split(":", 1)[1].strip() == "cluster, 3 primaries, 3 replica(s)"
    assert sum("slots " in line for line in lines) == 3


async def test_flags_and_subscriber_state_after_the_watcher_set_them(cluster: ClusterTopology) -> None:
    """Once the subscribers ran, every primary shows the flags and its subscriber's state."""
    settings = cluster_settings(cluster)
    async with watching(cluster) as w:
        topology, found = await cluster_topology_of(settings.redis, required_flags(True), w.watcher.states())
    assert not any("notify-keyspace-events" in line for line in found)
    text = "\n".join(align(topology_rows(topology)))
    assert text.count("subscriber subscribed") == 3
    for node in topology.nodes:
        if node.role == "master":
            assert node.flags_ok is True


def test_clock_skew_over_50ms_is_a_finding() -> None:
    """Nodes whose clocks differ by more than 50 ms are named in one warning."""
    near = [NodeFacts("a:1", "master", offset_ms=3.0), NodeFacts("b:1", "master", offset_ms=40.0)]
    assert cluster_findings(near) == []
    far = [*near, NodeFacts("c:1", "master", offset_ms=-30.0)]
    assert cluster_findings(far) == [
        "the node clocks differ by 70 ms (over 50 ms): due times are read from each shard's node; "
        "run NTP on every node"
    ]
    down = [NodeFacts("d:1", "replica", primary="a:1", error="Connection refused")]
    assert cluster_findings(down) == ["d:1: not answering: Connection refused"]
