"""A real Redis Cluster for tests: three primaries, three replicas and a spare node on loopback.

Every node is a private ``redis-server`` (``tests.redis_server``: the binary the suite uses,
a free port, its own directory) started with ``--cluster-enabled yes``. The cluster is built
with commands from Python (no ``redis-cli``): ``CLUSTER ADDSLOTSRANGE`` on each primary,
``CLUSTER MEET``, ``CLUSTER REPLICATE``. ``ClusterTopology.start`` returns only once every
node reports ``cluster_state:ok`` and every replica's link is up: a primary killed before its
replica's first sync never fails over (hence ``repl-diskless-sync-delay 0``). No node has
notification flags: the daemon must set them, on each primary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import redis
from redis.crc import key_slot

from tests.daemon_proc import wait_until
from tests.redis_server import RedisServer, free_port

SLOTS = 16384
NODE_TIMEOUT_MS = 1500
CLUSTER_ARGS = ("--cluster-enabled", "yes", "--cluster-node-timeout", str(NODE_TIMEOUT_MS))
CLUSTER_ARGS += ("--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0")


def until(pred: Callable[[], bool], timeout_s: float, what: str) -> None:
    """``wait_until``, where a Redis error (a node starting or killed) counts as not yet."""

    def attempt() -> bool:
        try:
            return bool(pred())
        except (redis.RedisError, OSError):
            return False

    wait_until(attempt, timeout_s, what)


@dataclass(frozen=True, slots=True)
class NodeView:
    """One line of ``CLUSTER NODES``."""

    node_id: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    slots: tuple[tuple[int, int], ...]

    @property
    def is_primary(self) -> bool:
        """A live primary (``fail`` ones are not)."""
        return "master" in self.flags and "fail" not in self.flags


def parse_nodes(text: str) -> list[NodeView]:
    """``CLUSTER NODES`` output (raw text) as views; migration markers ``[...]`` are skipped."""
    found = []
    for line in text.strip().splitlines():
        parts = line.split()
        port = int(parts[1].split("@")[0].rsplit(":", 1)[1])
        ranges = []
        for item in parts[8:]:
            if item.startswith("["):
                continue
            low, _, high = item.partition("-")
            ranges.append((int(low), int(high or low)))
        master = None if parts[3] == "-" else parts[3]
        found.append(NodeView(parts[0], port, frozenset(parts[2].split(",")), master, tuple(ranges)))
    return found


class ClusterNode(RedisServer):
    """A cluster-enabled redis-server; its id is read once it runs."""

    def __init__(self) -> None:
        super().__init__(*CLUSTER_ARGS, notify=None)
        # The bus port is given (a free one) rather than port + 10000, which may be taken or > 65535.
        self.extra_args += ["--cluster-config-file", str(self.dir / "nodes.conf")]
        self.bus_port = free_port()
        self.extra_args += ["--cluster-port", str(self.bus_port)]
        self.node_id = ""

    @property
    def address(self) -> str:
        """``host:port`` as ``redis.cluster.nodes`` lists it."""
        return f"127.0.0.1:{self.port}"

    def start(self, *args: str) -> ClusterNode:
        """Start and learn the node id."""
        super().start(*args)
        with self.client() as c:
            self.node_id = str(c.execute_command("CLUSTER", "MYID"), "ascii")
        return self

    def alive(self) -> bool:
        """Whether the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def view(self) -> list[NodeView]:
        """``CLUSTER NODES`` as this node sees it."""
        with self.client() as c:
            return parse_nodes(str(c.execute_command("CLUSTER", "NODES"), "utf-8"))

    def info(self, section: str) -> dict[str, object]:
        """``INFO section`` (``CLUSTER INFO`` for ``cluster_state``)."""
        with self.client(decode_responses=True) as c:
            if section == "cluster":
                text = str(c.execute_command("CLUSTER", "INFO"))
                return dict(line.split(":", 1) for line in text.split() if ":" in line)
            return dict(c.info(section))


class ClusterTopology:
    """Three primaries (slots split evenly), one replica each, and a spare outside the cluster."""

    def __init__(self, primaries: int = 3) -> None:
        self.initial = [ClusterNode() for _ in range(primaries)]
        self.replicas = [ClusterNode() for _ in range(primaries)]
        self.spare = ClusterNode()
        self.added: list[ClusterNode] = []  # nodes joined by add_node
        self.killed_slots: dict[str, tuple[tuple[int, int], ...]] = {}  # by kill_primary

    @property
    def members(self) -> list[ClusterNode]:
        """Every node that joined the cluster (the spare once added)."""
        return self.initial + self.replicas + self.added

    @property
    def nodes(self) -> list[str]:
        """The initial primaries as ``redis.cluster.nodes``."""
        return [n.address for n in self.initial]

    def start(self) -> ClusterTopology:
        """Start every node, assign slots, join them, attach replicas; wait until usable."""
        for node in [*self.initial, *self.replicas, self.spare]:
            node.start()
        step = SLOTS // len(self.initial)
        for index, node in enumerate(self.initial):
            high = SLOTS - 1 if index == len(self.initial) - 1 else (index + 1) * step - 1
            with node.client() as c:
                c.execute_command("CLUSTER ADDSLOTSRANGE", index * step, high)
        self._meet(self.initial + self.replicas)
        for primary, replica in zip(self.initial, self.replicas, strict=True):
            with replica.client() as c:
                c.execute_command("CLUSTER REPLICATE", primary.node_id)
        self.wait_ok()
        pairs = {r.node_id: p.node_id for p, r in zip(self.initial, self.replicas, strict=True)}
        for node in self.live():  # gossip: every node must know every replica's primary
            until(lambda n=node: _knows(n, pairs), 20, f"{node.port} knowing every replica")
        return self

    def _meet(self, nodes: list[ClusterNode]) -> None:
        first = self.initial[0]
        for node in nodes:
            if node is not first:
                with node.client() as c:
                    c.execute_command("CLUSTER MEET", "127.0.0.1", first.port, first.bus_port)
        ids = {n.node_id for n in nodes} | {n.node_id for n in self.members}
        for node in [*self.live(), *(n for n in nodes if n not in self.members)]:
            until(lambda n=node: ids <= {v.node_id for v in n.view()}, 20, f"node {node.port} meeting all")

    def live(self) -> list[ClusterNode]:
        """The members whose process runs."""
        return [n for n in self.members if n.alive()]

    def wait_ok(self, timeout_s: float = 30) -> None:
        """Every live node says ``cluster_state:ok`` and agrees on the primaries; every live
        replica's link to its primary is up."""
        for node in self.live():
            until(lambda n=node: n.info("cluster")["cluster_state"] == "ok", timeout_s, f"{node.port} ok")
        for node in self.live():
            until(lambda n=node: _settled(n), timeout_s, f"{node.port} link up")

    def by_id(self, node_id: str) -> ClusterNode:
        """The node with ``node_id``."""
        return next(n for n in [*self.initial, *self.replicas, self.spare] if n.node_id == node_id)

    def _views(self) -> list[NodeView]:
        for node in self.live():
            try:
                return node.view()
            except redis.RedisError:
                continue
        raise AssertionError("no cluster node answers")

    def primaries(self) -> list[ClusterNode]:
        """The live primaries that own slots, as the first answering node sees them."""
        return [self.by_id(v.node_id) for v in self._views() if v.is_primary and v.slots]

    def replica_of(self, primary: ClusterNode) -> ClusterNode:
        """A live replica of ``primary``."""
        views = self._views()
        return next(
            self.by_id(v.node_id)
            for v in views
            if v.master_id == primary.node_id and "fail" not in v.flags and self.by_id(v.node_id).alive()
        )

    def slot_owner(self, slot: int) -> ClusterNode:
        """The primary that owns ``slot``."""
        for view in self._views():
            if view.is_primary and any(low <= slot <= high for low, high in view.slots):
                return self.by_id(view.node_id)
        raise AssertionError(f"no primary owns slot {slot}")

    def node_for_key(self, key: str) -> ClusterNode:
        """The primary that owns ``key``'s slot."""
        return self.slot_owner(key_slot(key.encode()))

    def key_on(self, node: ClusterNode, prefix: str) -> str:
        """A key ``prefix<n>`` whose slot ``node`` owns."""
        ranges = self.slots_of(node)
        for n in range(100_000):
            slot = key_slot(f"{prefix}{n}".encode())
            if any(low <= slot <= high for low, high in ranges):
                return f"{prefix}{n}"
        raise AssertionError(f"no key for node {node.port}")

    def kill_primary(self, node: ClusterNode) -> ClusterNode:
        """kill -9 of ``node``; returns its replica (the one to be promoted)."""
        replica = self.replica_of(node)
        self.killed_slots[node.node_id] = self.slots_of(node)
        node.kill()
        return replica

    def slots_of(self, node: ClusterNode) -> tuple[tuple[int, int], ...]:
        """The slot ranges ``node`` owns."""
        return next(v.slots for v in self._views() if v.node_id == node.node_id)

    def wait_failover(self, old: ClusterNode, timeout_s: float = 30) -> ClusterNode:
        """Wait until another primary owns the slots ``old`` had when killed; that node."""
        old_slots = set(self.killed_slots[old.node_id])
        assert old_slots, f"{old.port} owned no slots"

        def promoted() -> ClusterNode | None:
            for view in self._views():
                if view.is_primary and view.node_id != old.node_id and old_slots <= set(view.slots):
                    return self.by_id(view.node_id)
            return None

        until(lambda: promoted() is not None, timeout_s, f"failover of {old.port}")
        for node in self.live():
            until(lambda n=node: n.info("cluster")["cluster_state"] == "ok", timeout_s, f"{node.port} ok")
        new = promoted()
        assert new is not None
        return new

    def add_node(self, node: ClusterNode | None = None) -> ClusterNode:
        """Join ``node`` (the spare) as a primary with no slots yet."""
        node = node or self.spare
        if not node.alive():
            node.start()
        self._meet([node])
        self.added.append(node)
        return node

    def migrate_slots(self, src: ClusterNode, dst: ClusterNode, count: int) -> list[int]:
        """Move the first ``count`` slots of ``src`` to ``dst`` with their keys; the slots moved."""
        ranges = self.slots_of(src)
        slots = [s for low, high in ranges for s in range(low, high + 1)][:count]
        others = [p for p in self.primaries() if p.node_id not in (src.node_id, dst.node_id)]
        with src.client() as s, dst.client() as d:
            for slot in slots:
                d.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", src.node_id)
                s.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", dst.node_id)
                while keys := s.execute_command("CLUSTER GETKEYSINSLOT", slot, 200):
                    s.execute_command("MIGRATE", "127.0.0.1", dst.port, "", 0, 5000, "KEYS", *keys)
                for node in [dst, src, *others]:
                    with node.client() as c:
                        c.execute_command("CLUSTER SETSLOT", slot, "NODE", dst.node_id)
        self.wait_ok()
        return slots

    def close(self) -> None:
        """Kill every node and remove the directories."""
        for node in [*self.initial, *self.replicas, self.spare]:
            node.close()


def _settled(node: ClusterNode) -> bool:
    """A replica's link is up; a primary counts as settled."""
    replication = node.info("replication")
    if replication.get("role") == "master":
        return True
    return replication.get("master_link_status") == "up"


def _knows(node: ClusterNode, pairs: dict[str, str]) -> bool:
    """``node``'s view lists each replica of ``pairs`` under its primary, neither failed."""
    views = {v.node_id: v for v in node.view()}
    return all(
        r in views
        and views[r].master_id == p
        and "fail" not in views[r].flags
        and "fail" not in views[p].flags
        for r, p in pairs.items()
    )
