"""Every Redis name reminderd uses, built in one place.

Trigger keys (``<prefix>-<userId>-<type>``) belong to the producers and live outside
the namespace; everything else lives under ``<namespace>:`` so several deployments can
share one Redis. Cluster note: the scripts touch a trigger key and namespace keys
together, so on Redis Cluster they would cross slots; reminderd targets a single
primary (optionally behind Sentinel), and the README says so.
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
    """Builders for the namespace's keys; one instance per configured namespace."""

    namespace: str = "reminderd"

    def record(self, member: str) -> str:
        """HASH: the durable record of an index member (fields: ``records.RecordField``)."""
        return f"{self.namespace}:r:{member}"

    @property
    def due(self) -> str:
        """ZSET: trigger key -> due time in epoch ms. The source of truth for what fires."""
        return f"{self.namespace}:due"

    def lock(self, member: str) -> str:
        """STRING (PX lease): the dedupe lock of the member's current occurrence.

        Its value ``instance|occurrence`` (built by the Lua prelude only) names the holder and
        the occurrence; one lock per member suffices, since a record holds one occurrence.
        """
        return f"{self.namespace}:lock:{member}"

    def aux(self, key: str) -> str:
        """SET: the auxiliary index members of trigger key ``key`` (replayed dead letters)."""
        return f"{self.namespace}:aux:{key}"

    def fired(self, key: str) -> str:
        """STRING (PX window): marks a record-less raw key as fired, against duplicate events."""
        return f"{self.namespace}:fired:{key}"

    @property
    def dead(self) -> str:
        """STREAM: dead letters, one entry per occurrence that could not be delivered."""
        return f"{self.namespace}:dead"

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
        return f"{self.namespace}:stats"

    def rate(self, bucket: str) -> str:
        """HASH: token bucket state (tokens, ts_ms) of a rate-limited provider account."""
        return f"{self.namespace}:rate:{bucket}"

    @property
    def epoch(self) -> str:
        """STRING: a token the first daemon writes into a data set; gone means the data set is new."""
        return f"{self.namespace}:epoch"

    @property
    def data_lost(self) -> str:
        """STRING (PX 7 days): JSON of the last detected loss of the data set (when, which server)."""
        return f"{self.namespace}:data_lost"

    @property
    def canary_prefix(self) -> str:
        """Prefix of short-lived STRING keys that prove expired events arrive."""
        return f"{self.namespace}:canary:"
