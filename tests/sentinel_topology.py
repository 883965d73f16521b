"""A real Sentinel topology for tests: one primary, one replica, three sentinels on loopback.

Every process is a private ``redis-server`` (sentinels run it with ``--sentinel``) on a free
port with its own directory. ``SentinelTopology.start`` returns only once the replica's link
is up and every sentinel sees the replica and the two other sentinels: a primary killed
before that never fails over (with the default ``repl-diskless-sync-delay 5`` the first
sync alone takes five seconds, hence 0 here).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis

from tests.redis_server import RedisServer, find_redis_server, free_port

MASTER = "mymaster"
DOWN_AFTER_MS = 1000
FAST_SYNC = ("--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0")


def _until(pred: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if pred():
                return
        except redis.RedisError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached within {timeout_s}s")


class SentinelServer:
    """One sentinel process monitoring ``MASTER``."""

    def __init__(self, primary_port: int) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="reminderd-sentinel-"))
        self.primary_port = primary_port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def node(self) -> str:
        """``host:port`` as ``redis.sentinel.nodes`` lists it."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> SentinelServer:
        """Write the config (sentinels rewrite it) and start; wait until it answers PING."""
        conf = self.dir / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\nlogfile {self.dir / 'sentinel.log'}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {self.primary_port} 2\n"
            f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER} 10000\n"
        )
        cmd = [find_redis_server(), str(conf), "--sentinel"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _until(lambda: bool(self.client().ping()), 10, f"sentinel on {self.port} answering")
        return self

    def client(self) -> redis.Redis:
        """A synchronous client on this sentinel."""
        return redis.Redis(port=self.port, socket_timeout=2, decode_responses=True)

    def master_state(self) -> dict[str, object]:
        """``SENTINEL MASTER`` of ``MASTER``, as redis-py parses it."""
        with self.client() as c:
            return dict(c.sentinel_master(MASTER))

    def kill(self) -> None:
        """kill -9."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def close(self) -> None:
        """Kill and remove the directory."""
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class SentinelTopology:
    """Primary + replica + three sentinels, started in order and waited for."""

    def __init__(self) -> None:
        # No notification flags on either data node: the daemon must set them, on each primary.
        self.primary = RedisServer(*FAST_SYNC, notify=None)
        self.replica = RedisServer(*FAST_SYNC, notify=None)
        self.sentinels: list[SentinelServer] = []

    @property
    def nodes(self) -> list[str]:
        """The sentinels as ``redis.sentinel.nodes``."""
        return [s.node for s in self.sentinels]

    def url(self, db: int = 0) -> str:
        """The ``redis+sentinel://`` URL of this topology."""
        return f"redis+sentinel://{','.join(self.nodes)}/{MASTER}/{db}"

    def start(self) -> SentinelTopology:
        """Start everything; return once a failover could succeed."""
        self.primary.start()
        self.replica.start("--replicaof", "127.0.0.1", str(self.primary.port))
        _until(lambda: _link_up(self.replica), 15, "the replica's link to the primary")
        self.sentinels = [SentinelServer(self.primary.port).start() for _ in range(3)]
        for sentinel in self.sentinels:
            _until(lambda s=sentinel: _sees_all(s), 20, f"sentinel {sentinel.port} seeing its peers")
        return self

    def primary_port(self) -> int:
        """The primary's port as the first live sentinel reports it."""
        for sentinel in self.sentinels:
            try:
                with sentinel.client() as c:
                    return int(c.sentinel_get_master_addr_by_name(MASTER)[1])
            except redis.RedisError:
                continue
        raise AssertionError("no sentinel answers")

    def wait_failover(self, old_port: int, timeout_s: float = 30) -> RedisServer:
        """Wait until every live sentinel names another primary that answers as one; that server."""
        live = [s for s in self.sentinels if s.proc is not None and s.proc.poll() is None]

        def moved() -> bool:
            ports = {int(s.client().sentinel_get_master_addr_by_name(MASTER)[1]) for s in live}
            return len(ports) == 1 and old_port not in ports

        _until(moved, timeout_s, "a failover")
        new = self.replica if self.primary_port() == self.replica.port else self.primary
        _until(lambda: new.client().info("replication")["role"] == "master", 10, "the new primary's role")
        return new

    def close(self) -> None:
        """Kill every process and remove the directories."""
        for sentinel in self.sentinels:
            sentinel.close()
        self.replica.close()
        self.primary.close()


def _link_up(replica: RedisServer) -> bool:
    return replica.client().info("replication").get("master_link_status") == "up"


def _sees_all(sentinel: SentinelServer) -> bool:
    state = sentinel.master_state()
    if int(str(state["num-slaves"])) < 1 or int(str(state["num-other-sentinels"])) < 2:
        return False
    with sentinel.client() as c:
        replicas = c.sentinel_slaves(MASTER)
    return all(r["is_sdown"] is False and r["master-link-status"] == "ok" for r in replicas)
