"""The pipeline of one run, assembled for its target: one Redis (or Sentinel), or a Cluster.

On one Redis the expired events come from one ``Subscriber`` on one connection; a
reconnect re-applies the flags on the storage connection and a gap runs a full adoption
pass over the store's SCAN (``Daemon._reapply_on_reconnect``, ``Recovery.run_gap_passes``).
On Cluster the events are node-local: a ``TopologyWatcher`` keeps a subscriber per primary
and handles each node's gaps itself (flags on that node, a sweep, an adoption pass over
that node's SCAN: ``reminderd.daemon.cluster``), so neither of those two tasks runs there,
the start-up proof and adoption go node by node, and the heartbeat reports the state of
each primary's subscriber. ``Pipeline.feed`` is the one event source of the run, either way.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import redis.asyncio as aioredis

from reminderd.daemon.cluster import check_cluster_notifications, cluster_watcher
from reminderd.daemon.housekeeping import notify_wanted
from reminderd.daemon.startup import check_notifications
from reminderd.pipeline.cluster_watch import TopologyWatcher
from reminderd.pipeline.finish import Finisher
from reminderd.pipeline.hints import Hints
from reminderd.pipeline.intake import Intake
from reminderd.pipeline.recovery import Recovery
from reminderd.pipeline.runtime import Context
from reminderd.pipeline.subscriber import Subscriber
from reminderd.storage.connection import db_of
from reminderd.storage.server import NotifyState


@dataclass(frozen=True, slots=True)
class Pipeline:
    """The pipeline objects of one run, wired together; exactly one of the two feeds is set."""

    hints: Hints
    finisher: Finisher
    intake: Intake
    recovery: Recovery
    subscriber: Subscriber | None  # one Redis or Sentinel: one subscription
    watcher: TopologyWatcher | None = None  # Cluster: a subscriber per primary

    @property
    def feed(self) -> Subscriber | TopologyWatcher:
        """The run's source of expired events (its ``run`` is a task of the daemon)."""
        feed = self.subscriber or self.watcher
        assert feed is not None
        return feed

    @property
    def nodes(self) -> dict[str, str] | None:
        """The subscriber state per primary on Cluster (heartbeat and ``status``), else None."""
        return None if self.watcher is None else self.watcher.states()


def assemble(
    ctx: Context, tg: asyncio.TaskGroup, storage: aioredis.Redis, subscriber: aioredis.Redis | None
) -> Pipeline:
    """The pipeline on ``storage``: with a ``subscriber`` connection, one Subscriber on it
    (in this order, as it always was); without one (Cluster), a topology watcher."""
    hints = Hints()
    finisher = Finisher(ctx, hints)
    intake = Intake(ctx, hints, finisher, tg)
    recovery = Recovery(ctx, intake)
    if subscriber is not None:
        return Pipeline(hints, finisher, intake, recovery, Subscriber(subscriber, db_of(storage), ctx, hints))
    return Pipeline(hints, finisher, intake, recovery, None, cluster_watcher(ctx, hints, recovery))


async def prove_notifications(p: Pipeline, storage: aioredis.Redis, canary: str, ctx: Context) -> NotifyState:
    """Fix and prove the notification flags: on the one server, or on every primary."""
    if p.watcher is not None:
        return await check_cluster_notifications(p.watcher, canary)
    assert p.subscriber is not None
    manage, required = notify_wanted(ctx)
    return await check_notifications(storage, p.subscriber, canary, manage=manage, required=required)


async def reconcile(p: Pipeline) -> dict[str, int]:
    """Start-up reconciliation; on Cluster its adoption pass walks every primary's SCAN."""
    if p.watcher is None:
        return await p.recovery.reconcile()
    scans = [(h.address, h.scan) for h in p.watcher.nodes.values()]
    return await p.recovery.reconcile(scans)
