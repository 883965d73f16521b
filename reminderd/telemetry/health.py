"""Health facts of the running daemon and the two probes judged from them.

Liveness asks whether the event loop still beats; readiness whether Redis answers and the
start-up sweep recovered what came due offline. Redis reachability is reported both ways
by the daemon's periodic jobs that always talk to Redis (``reminderd.daemon.periodic``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HealthState:
    """What the probes judge: loop heartbeat (``time.monotonic()``), Redis, start-up sweep."""

    loop_heartbeat_s: float
    redis_reachable: bool
    startup_sweep_done: bool


class Health:
    """Mutable health facts, written by the event loop and read by the HTTP thread.

    Plain attribute writes of a float or bool are atomic under the GIL, so no lock.
    """

    def __init__(self) -> None:
        self.loop_heartbeat_s = time.monotonic()
        self.redis_reachable = False
        self.startup_sweep_done = False

    def beat(self) -> None:
        """Record that the event loop is running; call it from a periodic loop task."""
        self.loop_heartbeat_s = time.monotonic()

    def snapshot(self) -> HealthState:
        """The current facts, for ``MetricsServer``."""
        return HealthState(self.loop_heartbeat_s, self.redis_reachable, self.startup_sweep_done)


def liveness(state: HealthState, stuck_after_s: float) -> tuple[bool, str | None]:
    """Alive unless the loop heartbeat is older than ``stuck_after_s``."""
    age_s = time.monotonic() - state.loop_heartbeat_s
    if age_s > stuck_after_s:
        return False, f"event loop heartbeat is {age_s:.1f}s old (limit {stuck_after_s:g}s)"
    return True, None


def readiness(state: HealthState) -> tuple[bool, str | None]:
    """Ready once Redis answers and the start-up sweep recovered what came due offline."""
    if not state.redis_reachable:
        return False, "redis unreachable"
    if not state.startup_sweep_done:
        return False, "start-up sweep not finished"
    return True, None
