"""Every Redis name reminderd uses, built in one place.

Trigger keys (``<prefix>-<userId>-<type>``) belong to the producers and live outside
the namespace; everything else lives under ``<namespace>:`` so several deployments can
share one Redis.

Shards (``storage/layout.py``): the keys a script touches together (due index, records,
locks, fired markers, aux sets, stats, dead letters, the shard's epoch) are a shard's and
start with ``Names.shard``: the namespace itself for the one shard of a single Redis (the
names every existing data set uses), ``<namespace>:{<tag>}`` for a shard of a Cluster
layout, whose hash tag puts all of them in one slot. Daemon-wide keys (daemons,
heartbeats, rate buckets, canaries, the data-loss note, the shard count) and the wake
channel stay under the plain namespace: each is one key per command or script.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_GLOB = re.compile(r"([*?\[\]\\])")


def expired_channel(db: int) -> str:
    """Pub/sub channel on which Redis announces expired keys of database ``db``."""
    return f"__keyevent@{db}__:expired"


def keyspace_prefix(db: int) -> str:
    """Prefix of the pub/sub channel (flag K) on which Redis announces each event of one key of
    database ``db``: the key name follows, the message is the event (``expire``, ``del``, ...)."""
    return f"__keyspace@{db}__:"


def glob_pattern(prefix: str) -> str:
    """A glob (SCAN MATCH, PSUBSCRIBE) matching every name that starts with ``prefix``."""
    return _GLOB.sub(r"\\\1", prefix) + "*"


def trigger_pattern(rule: str) -> str:
    """A glob matching the trigger keys of rule prefix ``rule`` (``<rule>-*``)."""
    return glob_pattern(f"{rule}-")


@dataclass(frozen=True, slots=True)
class Names:
    """Builders for the namespace's keys; one instance per shard (``tag``: its hash tag, '' for
    the untagged single shard), whose daemon-wide names are the namespace's."""

    namespace: str = "reminderd"
    tag: str = ""

    @property
    def shard(self) -> str:
        """Prefix of the shard's keys: the namespace, or ``<namespace>:{<tag>}`` (one slot)."""
        return f"{self.namespace}:{{{self.tag}}}" if self.tag else self.namespace

    def record(self, member: str) -> str:
        """HASH: the durable record of an index member (fields: ``records.RecordField``)."""
        return f"{self.shard}:r:{member}"

    @property
    def due(self) -> str:
        """ZSET: trigger key -> due time in epoch ms. The source of truth for what fires."""
        return f"{self.shard}:due"

    def lock(self, member: str) -> str:
        """STRING (PX lease): the dedupe lock of the member's current occurrence.

        Its value ``instance|occurrence`` (built by the Lua prelude only) names the holder and
        the occurrence; one lock per member suffices, since a record holds one occurrence.
        """
        return f"{self.shard}:lock:{member}"

    def aux(self, key: str) -> str:
        """SET: the auxiliary index members of trigger key ``key`` (replayed dead letters)."""
        return f"{self.shard}:aux:{key}"

    def fired(self, key: str) -> str:
        """STRING (PX window): marks a record-less raw key as fired, against duplicate events."""
        return f"{self.shard}:fired:{key}"

    @property
    def dead(self) -> str:
        """STREAM: dead letters, one entry per occurrence that could not be delivered."""
        return f"{self.shard}:dead"

    @property
    def wake(self) -> str:
        """Pub/sub channel: a due time earlier than any known was scheduled (payload: ms)."""
        return f"{self.namespace}:wake"

    @property
    def daemons(self) -> str:
        """ZSET: daemon instance id -> last heartbeat epoch ms."""
        return f"{self.namespace}:daemons"

    def heartbeat(self, instance: str) -> str:
        """STRING (PX ttl): JSON with host, pid, version, started and last sweep of a daemon."""
        return f"{self.namespace}:hb:{instance}"

    @property
    def stats(self) -> str:
        """HASH: cumulative counters shared by all daemons (fired, failed, dead, ...)."""
        return f"{self.shard}:stats"

    def rate(self, bucket: str) -> str:
        """HASH: token bucket state (tokens, ts_ms) of a rate-limited provider account."""
        return f"{self.namespace}:rate:{bucket}"

    @property
    def epoch(self) -> str:
        """STRING: a token the first daemon writes into a data set (per shard); gone means it is new."""
        return f"{self.shard}:epoch"

    @property
    def shards(self) -> str:
        """STRING: the data set's shard count, written at first start (``layout.check_shards``)."""
        return f"{self.namespace}:shards"

    @property
    def data_lost(self) -> str:
        """STRING (PX 7 days): JSON of the last detected loss of the data set (when, which server)."""
        return f"{self.namespace}:data_lost"

    @property
    def canary_prefix(self) -> str:
        """Prefix of short-lived STRING keys that prove expired events arrive."""
        return f"{self.namespace}:canary:"
