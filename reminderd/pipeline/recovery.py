"""Start-up reconciliation and the periodic repairs around the live path.

Reconciliation runs before live service: adopt raw trigger keys written while no daemon
ran, re-create trigger keys that vanished early, then claim every occurrence that came
due while we were away (each goes through the one pipeline, under its misfire policy).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

import structlog
from redis.exceptions import RedisError

from reminderd.pipeline.events import ADOPT_BATCH, report_adoption, trigger_rule
from reminderd.pipeline.hints import Hints
from reminderd.pipeline.intake import Intake
from reminderd.pipeline.runtime import Context
from reminderd.storage import epoch
from reminderd.storage.names import trigger_pattern
from reminderd.storage.server import ServerIdentity, server_identity

log = structlog.get_logger("reminderd.pipeline.recovery")
SCAN_COUNT = 10_000  # keys a SCAN step looks at: few round trips over millions of keys
PROGRESS_EVERY_S = 5.0
# One SCAN step (cursor, pattern, count) -> (cursor, keys). The store's by default; on Redis
# Cluster one node's (``NodeHandle.scan``): SCAN walks the keys of the node it runs on.
Scan = Callable[[int, str, int], Awaitable[tuple[int, list[str]]]]


class Recovery:
    """Adoption scans, trigger-key repair, start-up recovery, gauges and server watch."""

    def __init__(self, ctx: Context, intake: Intake) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.intake = intake
        self._cursors: dict[tuple[str, str], int] = {}  # (node, prefix): "" is the store's
        self._server: ServerIdentity | None = None
        self._scheduled_seen = 0  # index size at the last look, to tell a wiped Redis

    async def reconcile(self, scans: Sequence[tuple[str, Scan]] | None = None) -> dict[str, int]:
        """Adopt, repair and recover; the counts for the start-up summary line.

        ``scans``: on Cluster, each primary's SCAN (by address), the adoption walks them all;
        the server identity is then the watcher's business (per node), not read here."""
        if scans is None:
            self._server = await server_identity(self.store.redis)
        started = time.monotonic()
        adopted = repaired = recovered = 0
        try:
            await epoch.mark_shards(self.store.redis, self.store.layout)  # a write: refused on a replica
            if scans is None:
                adopted = await self.adopt_all()
            for node, scan in scans or ():
                adopted += await self.adopt_all(f"startup {node}", scan)
            repaired = await self.repair_all()
            recovered = await self.intake.drain_backlog()
        except RedisError as exc:
            # A read-only replica, or Redis gone mid-way: the periodic sweep retries the same
            # work with backoff, so exiting (and a restart loop under systemd) gains nothing.
            log.error("reconcile.failed", error=str(exc), note="serving anyway; the sweep keeps retrying")
        summary = {
            "recovered": recovered,
            "repaired": repaired,
            "adopted": adopted,
            "reconcile_ms": round((time.monotonic() - started) * 1000),
        }
        log.info("reconcile.done", **summary)
        return summary

    async def adopt_all(self, reason: str = "startup", scan: Scan | None = None) -> int:
        """A full adoption pass: every rule prefix scanned to the end, with progress in the log.

        Run at start-up and after every gap in the subscription (``Hints.gap``), when
        expire events of raw keys may have been lost; on Cluster once per node (``scan``).
        """
        started = last_log = time.monotonic()
        scanned = adopted = 0
        for prefix in self.ctx.settings.prefixes:
            cursor = 0
            while True:
                cursor, seen, n = await self._adopt_step(prefix, cursor, SCAN_COUNT, "scan", scan)
                scanned, adopted = scanned + seen, adopted + n
                if time.monotonic() - last_log >= PROGRESS_EVERY_S:
                    last_log = time.monotonic()
                    _log_pass("adoption.progress", reason, scanned, adopted, last_log - started)
                if cursor == 0:
                    break
        _log_pass("adoption.done", reason, scanned, adopted, time.monotonic() - started)
        return adopted

    async def run_gap_passes(self, hints: Hints) -> None:
        """A full adoption pass after each gap in the subscription; forever."""
        while True:
            await hints.gap.wait()
            hints.gap.clear()
            try:
                await self.adopt_all("gap")
            except RedisError as exc:
                log.warning("adoption.failed", error=str(exc), note="the periodic adoption scan goes on")

    async def adopt_scan(self, scan: Scan | None = None, node: str = "") -> None:
        """Periodic, bounded: continue each prefix's SCAN (of ``node``, with ``scan``) where the
        last run stopped."""
        budget = self.ctx.settings.daemon.adoption_batch
        for prefix in self.ctx.settings.prefixes:
            cursor = self._cursors.get((node, prefix), 0)
            step, seen = min(1000, budget), 0
            while seen < budget:
                cursor, _seen, _n = await self._adopt_step(prefix, cursor, step, "periodic_scan", scan)
                seen += step
                if cursor == 0:
                    break
            self._cursors[(node, prefix)] = cursor

    async def _adopt_step(
        self, prefix: str, cursor: int, count: int, source: str, scan: Scan | None = None
    ) -> tuple[int, int, int]:
        """One SCAN step and the adoption of what it found, in concurrent batches: (cursor, seen, adopted)."""
        cursor, keys = await (scan or self.store.raw.scan)(cursor, trigger_pattern(prefix), count)
        prefixes = self.ctx.settings.prefixes
        wanted = [k for k in keys if trigger_rule(k, prefixes) == prefix]
        limit = self.ctx.settings.limits.payload_max_bytes
        batches = [wanted[i : i + ADOPT_BATCH] for i in range(0, len(wanted), ADOPT_BATCH)]
        found = await asyncio.gather(*(self.store.raw.adopt(b, payload_max_bytes=limit) for b in batches))
        for one in found:
            report_adoption(self.ctx, one, prefix, source)
        return cursor, len(keys), sum(one.adopted for one in found)

    async def repair_all(self) -> int:
        """Re-create missing trigger keys of every future index entry."""
        repaired = 0
        async for page in self.store.pages_after(await self.store.now_ms(), 1000):
            repaired += await self.store.repair([m for m, _ in page])
        if repaired:
            log.warning(
                "reminder.repaired", count=repaired, note="trigger keys had vanished before their due time"
            )
        return repaired

    async def refresh_gauges(self) -> int:
        """Update scheduled/backlog gauges; the backlog."""
        scheduled, backlog = await self.store.counts(self.intake.clock.now_ms())
        self._scheduled_seen = scheduled
        self.ctx.metrics.set_scheduled(scheduled)
        self.ctx.metrics.set_backlog(backlog)
        return backlog

    async def server_changed(self) -> bool:
        """True (once) when Redis's run id or replication id changed since the last look."""
        try:
            current = await server_identity(self.store.redis)
        except RedisError:
            return False
        before, self._server = self._server, current
        if before is None or (before.run_id == current.run_id and before.replid == current.replid):
            return False
        log.warning(
            "redis.server_changed",
            old_run_id=before.run_id,
            new_run_id=current.run_id,
            note="a restart or failover: re-applying notification flags and sweeping now",
        )
        # The epoch token, not an empty index: a producer's first write would hide the loss.
        if not await epoch.mark_shards(self.store.redis, self.store.layout):
            now_ms = self.intake.clock.now_ms()
            await epoch.note_loss(self.store.redis, self.store.names, now_ms, current.run_id)
            log.error(
                "redis.data_lost",
                scheduled_before=self._scheduled_seen,
                note="the new Redis holds no data: reminders scheduled before are gone "
                "(enable AOF persistence to keep them across restarts)",
            )
        return True


def _log_pass(event: str, reason: str, scanned: int, adopted: int, took_s: float) -> None:
    rate = round(scanned / took_s) if took_s > 0 else scanned
    log.info(
        event, reason=reason, scanned=scanned, adopted=adopted, took_ms=round(took_s * 1000), keys_per_s=rate
    )
