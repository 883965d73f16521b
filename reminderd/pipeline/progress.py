"""Progress lines of a long start-up pass, for the operator watching the log.

Recovering 50 000 overdue reminders takes seconds; a log that says nothing until the end
looks like a hung daemon. So a pass says its total up front, then every few seconds how
far it is, how fast it goes and when it should be done.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger("reminderd.pipeline.progress")
EVERY_S = 2.0


@dataclass(slots=True)
class Progress:
    """``<event>.started`` with the total now, ``<event>.progress`` at most every ``every_s``."""

    event: str
    total: int
    every_s: float = EVERY_S
    started_s: float = field(default_factory=time.monotonic)
    logged_s: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.total:
            log.info(f"{self.event}.started", total=self.total)

    def update(self, done: int) -> None:
        """``done`` of ``total`` so far; a line if the last one is old enough."""
        now_s = time.monotonic()
        if not self.total or now_s - self.logged_s < self.every_s:
            return
        self.logged_s = now_s
        rate = done / max(now_s - self.started_s, 1e-3)
        eta_s = max(0, self.total - done) / rate if rate else None
        log.info(
            f"{self.event}.progress",
            done=done,
            total=self.total,
            rate_per_s=round(rate),
            eta_s=None if eta_s is None else round(eta_s, 1),
        )
