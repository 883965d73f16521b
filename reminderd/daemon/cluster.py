"""The daemon's Redis Cluster parts: the topology watcher, its node gaps, canaries and scans.

On Cluster the one ``Subscriber`` on one connection becomes a ``TopologyWatcher`` with a
subscriber per primary (``reminderd.pipeline.cluster_watch``). What the single-server path
does through ``Hints`` (re-apply the flags on the storage connection, a full adoption pass
over the store's SCAN) would reach one arbitrary node here, so the watcher handles a gap on
the node it happened on: flags re-applied there, a sweep, and ``adopt_all`` over that
node's SCAN (wired here). The periodic adoption scan walks every primary in turn, and the
start-up proof writes one canary per primary, named into a slot that node owns.
"""

from __future__ import annotations

import structlog
from redis.exceptions import RedisError

from reminderd.daemon.periodic import PeriodicLoop
from reminderd.pipeline.cluster_watch import NodeHandle, TopologyWatcher
from reminderd.pipeline.hints import Hints
from reminderd.pipeline.recovery import Recovery
from reminderd.pipeline.runtime import Context
from reminderd.storage.cluster import node_client
from reminderd.storage.server import NotifyState

log = structlog.get_logger("reminderd.daemon.cluster")
SUBSCRIBE_WAIT_S = 5.0


def cluster_watcher(ctx: Context, hints: Hints, recovery: Recovery) -> TopologyWatcher:
    """The watcher for ``redis.cluster``, whose node gaps run an adoption pass of that node."""
    redis_settings = ctx.settings.redis
    spec = redis_settings.cluster
    assert spec is not None, "cluster_watcher needs redis.cluster"
    watcher = TopologyWatcher(
        ctx, hints, lambda a, sub: node_client(redis_settings, spec, a, subscriber=sub), spec.nodes
    )

    async def adopt_node(handle: NodeHandle) -> None:
        try:
            await recovery.adopt_all(f"gap {handle.address}", scan=handle.scan)
        except RedisError as exc:
            log.warning(
                "adoption.failed", node=handle.address, error=str(exc), note="the periodic scan goes on"
            )

    watcher.on_gap = adopt_node
    return watcher


def node_adoption(watcher: TopologyWatcher, recovery: Recovery, ctx: Context) -> PeriodicLoop:
    """The periodic adoption scan on Cluster: each primary's SCAN continued where it stopped."""

    async def scan_all() -> None:
        for handle in list(watcher.nodes.values()):
            await recovery.adopt_scan(handle.scan, handle.address)

    return PeriodicLoop("adoption", scan_all, lambda: ctx.settings.daemon.adoption_interval_ms)


async def check_cluster_notifications(watcher: TopologyWatcher, canary_base: str) -> NotifyState:
    """Wait for every primary's subscriber, then prove a canary on each (flags were set by
    the subscribers before they subscribed); the state sums the nodes up."""
    if not await watcher.wait_subscribed(SUBSCRIBE_WAIT_S):
        log.warning("redis.subscribe_slow", note="continuing; the sweep delivers regardless")
    handles = list(watcher.nodes.values())
    flags = {h.notify.flags for h in handles}
    state = NotifyState(
        flags=flags.pop() if len(flags) == 1 else "per node",
        managed=ctx_managed(watcher),
        ok=bool(handles) and all(h.notify.ok for h in handles),
    )
    state.warnings = [f"{h.address}: {h.notify.problem}" for h in handles if h.notify.problem]
    if not state.ok:
        state.canary = "skipped"
        return state
    results = await watcher.prove_events(canary_base)
    failed = sorted(a for a, r in results.items() if r != "ok")
    state.canary = "failed" if failed else "ok"
    if failed:
        log.warning(
            "redis.canary", result="failed", nodes=failed, effect="those nodes' keys fire from the sweep"
        )
    else:
        log.info("redis.canary", result="ok", nodes=len(results))
    return state


def ctx_managed(watcher: TopologyWatcher) -> bool:
    """Whether reminderd sets the flags (``redis.manage_notifications``)."""
    return watcher.ctx.settings.redis.manage_notifications
