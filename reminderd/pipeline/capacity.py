"""The occurrences in flight and how many more may start: a slot count, held back by load.

Dispatch adds each claim it starts and removes it when it ends; intake asks how much room
there is before claiming, and waits for room when there is too little. One object, so the
count intake claims against is the count dispatch runs, and the waiting is done here
instead of by an event that another module clears.

Three things bound what may be claimed:

- ``daemon.concurrency``, the slot count;
- in-flight HTTP work: every request waiting for a connection slot of its host
  (``daemon.http_connections_per_host``) takes one slot off, so a daemon whose receivers are
  slower than its concurrency claims what it can send and leaves the rest to other
  instances instead of holding leases on a queue;
- the event loop's lag: a timer probe measures how late the loop runs what is due. Past
  ``LAG_HIGH_S`` the loop is saturated (every ready callback of a thousand HTTP answers
  runs before the next timer), so the in-flight limit is cut multiplicatively; below
  ``LAG_LOW_S`` it grows back additively (``Throttle``). A saturated daemon so claims
  less, its heartbeat, lease renewal and watchdog timers stay on time, and the work it
  did not claim stays due for another instance or for the next free slot, never turned
  into a timeout and a re-send.
"""

from __future__ import annotations

import asyncio

import structlog

from reminderd.pipeline.runtime import Context
from reminderd.storage.store import Claim

log = structlog.get_logger("reminderd.pipeline.capacity")

PROBE_S = 0.025  # the lag probe's period
LAG_HIGH_S = 0.05  # a timer this late: the loop is saturated, claim less
LAG_LOW_S = 0.015  # below this the loop keeps up: claim more again
CUT_EVERY_S = 0.1  # at most one cut per this long, so one slow tick is not cut again and again
CUT_FACTOR = 0.7
GROW_STEPS = 20  # back from the floor to full concurrency in this many quiet, busy probes
IDLE_RESET_S = 1.0  # nothing in flight this long: the throttle is lifted
FLOOR_SHARE = 20  # the limit never goes below concurrency / FLOOR_SHARE (and never below 1)


class Throttle:
    """The in-flight limit the loop's lag allows: cut when late, grown back when not.

    A pass of the loop runs every ready callback, so its length grows with the occurrences
    in flight: a cut scales what was in flight by ``LAG_HIGH_S / lag`` (at most
    ``CUT_FACTOR``), aiming the next pass at the threshold. A pure state machine over
    (lag, time, concurrency, in flight), so it is tested without a loop.

    It grows only while the limit binds (at least half of it in flight): a loop that keeps
    up because little runs says nothing about a larger load. Idle for ``IDLE_RESET_S``, the
    throttle is lifted.
    """

    def __init__(self) -> None:
        self.limit: int | None = None  # None: not throttled, the full concurrency
        self.lag_s = 0.0
        self._cut_at_s = float("-inf")
        self._busy_at_s = float("-inf")

    def allowed(self, concurrency: int) -> int:
        """The in-flight limit now, for ``concurrency`` slots."""
        return concurrency if self.limit is None else min(self.limit, concurrency)

    def observe(self, lag_s: float, now_s: float, concurrency: int, in_flight: int) -> bool:
        """Take one lag sample; True if the limit grew (waiters for room may go on)."""
        self.lag_s = lag_s
        current = self.allowed(concurrency)
        if in_flight:
            self._busy_at_s = now_s
        if lag_s >= LAG_HIGH_S:
            if now_s - self._cut_at_s >= CUT_EVERY_S:
                self._cut_at_s = now_s
                factor = min(CUT_FACTOR, LAG_HIGH_S / lag_s)
                floor = max(1, concurrency // FLOOR_SHARE)
                self.limit = max(floor, int(min(current, max(in_flight, floor)) * factor))
            return False
        if lag_s > LAG_LOW_S or self.limit is None:
            return False
        if now_s - self._busy_at_s >= IDLE_RESET_S:
            self.limit = None
        elif in_flight >= current // 2:
            grown = current + max(1, concurrency // GROW_STEPS)
            self.limit = None if grown >= concurrency else grown
        else:
            return False
        return True


class LagProbe:
    """A timer that re-arms itself every ``PROBE_S`` and reports how late it ran.

    Timers, not a task: a handle costs a few microseconds a tick and leaves nothing to await
    at shutdown. Started by the first ``Capacity.free``; ``stop`` cancels it.
    """

    def __init__(self, capacity: Capacity) -> None:
        self._capacity = capacity
        self._handle: asyncio.TimerHandle | None = None
        self._due_s = 0.0

    @property
    def running(self) -> bool:
        """Whether the probe is armed."""
        return self._handle is not None

    def start(self) -> None:
        """Arm the probe on the running loop (a no-op outside one)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._arm(loop, loop.time())

    def stop(self) -> None:
        """Disarm the probe."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _arm(self, loop: asyncio.AbstractEventLoop, now_s: float) -> None:
        self._due_s = now_s + PROBE_S
        self._handle = loop.call_at(self._due_s, self._tick, loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        now_s = loop.time()
        self._capacity.lagged(max(0.0, now_s - self._due_s), now_s)
        if self._handle is not None:
            self._arm(loop, now_s)


class Capacity:
    """In-flight claims by (member, occurrence), against the concurrency that load allows."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._in_flight: dict[tuple[str, int], Claim] = {}
        self._members: dict[str, int] = {}  # member -> its occurrences in flight
        self._raw: dict[str, int] = {}  # member -> its raw occurrences in flight
        self._freed = asyncio.Event()
        self.throttle = Throttle()
        self.probe = LagProbe(self)

    def __len__(self) -> int:
        return len(self._in_flight)

    @property
    def _concurrency(self) -> int:
        return self._ctx.settings.daemon.concurrency

    def limit(self) -> int:
        """How many occurrences may be in flight now (the concurrency, less while the loop lags)."""
        return self.throttle.allowed(self._concurrency)

    def free(self) -> int:
        """How many more occurrences may be claimed now without waiting."""
        if not self.probe.running:
            self.probe.start()
        http = self._ctx.http
        backlog = 0 if http is None else http.queued
        return max(0, self.limit() - len(self._in_flight) - backlog)

    def lagged(self, lag_s: float, now_s: float) -> None:
        """One lag sample from the probe: adjust the limit, wake waiters if it grew."""
        before = self.throttle.limit
        if self.throttle.observe(lag_s, now_s, self._concurrency, len(self)):
            self._freed.set()
        after = self.throttle.limit
        if (before is None) != (after is None):
            state = "capacity.throttled" if after is not None else "capacity.unthrottled"
            log.info(state, lag_ms=round(lag_s * 1000), limit=self.limit(), in_flight=len(self))
        self._ctx.metrics.set_loop_lag(lag_s, self.limit())

    def add(self, claim: Claim) -> bool:
        """Count ``claim`` as in flight; False if it already was (our own lapsed lease, re-claimed)."""
        ident = (claim.member, claim.occurrence)
        if ident in self._in_flight:
            return False
        self._in_flight[ident] = claim
        self._members[claim.member] = self._members.get(claim.member, 0) + 1
        if claim.raw:
            self._raw[claim.member] = self._raw.get(claim.member, 0) + 1
        return True

    def remove(self, claim: Claim) -> None:
        """``claim`` has ended: its slot is free again."""
        if self._in_flight.pop((claim.member, claim.occurrence), None) is not None:
            _count_down(self._members, claim.member)
            if claim.raw:
                _count_down(self._raw, claim.member)
        self._freed.set()

    def holds(self, member: str) -> bool:
        """Whether an occurrence of ``member`` is in flight here (its claim took the lock)."""
        return member in self._members

    def holds_raw(self, member: str) -> bool:
        """Whether a raw occurrence of ``member`` is in flight here (claimed once its key was gone)."""
        return member in self._raw

    def leases(self) -> list[tuple[str, int]]:
        """(member, occurrence) of everything in flight, for lease renewal."""
        return list(self._in_flight)

    async def room(self, slots: int) -> None:
        """Return once at least ``slots`` slots are free (a quarter of a throttled limit will do)."""
        while self.free() < min(slots, max(1, self.limit() // 4)):
            self._freed.clear()
            await self._freed.wait()

    def close(self) -> None:
        """Stop the lag probe (the daemon's drain; a stopped loop drops it anyway)."""
        self.probe.stop()


def _count_down(counts: dict[str, int], member: str) -> None:
    left = counts.pop(member) - 1
    if left:
        counts[member] = left
