"""A processor that does nothing but note when it was called, for the benchmark.

Each call appends ``(key, occurrence, due_at_ms, wall ms)`` to an in-memory list (a
tuple and a clock read: well under a microsecond); ``aclose`` writes the list to
``<dir>/fires-<pid>.tsv`` when the daemon stops. No I/O on the hot path, so what is
measured is the daemon's pipeline, not the recorder.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reminderd.models import Occurrence


class Noop:
    """``{type: plugin, path: "bench.noop:Noop", options: {dir: <path>}}``."""

    def __init__(self, name: str, options: Mapping[str, Any], ctx: object) -> None:
        self.name = name
        self.dir = Path(str(options["dir"]))
        self.fires: list[tuple[str, int, int, float]] = []

    async def __call__(self, occ: Occurrence) -> None:
        """Record the fire; nothing else."""
        self.fires.append((occ.key, occ.occurrence, occ.due_at_ms, time.time() * 1000))

    async def call_many(self, occs: Sequence[Occurrence]) -> list[None]:
        """The batch form (``reminderd.processors.BatchProcessor``): one clock read per batch."""
        now = time.time() * 1000
        self.fires += [(occ.key, occ.occurrence, occ.due_at_ms, now) for occ in occs]
        return [None] * len(occs)

    async def aclose(self) -> None:
        """Append everything recorded so far to this process's file."""
        fires, self.fires = self.fires, []
        path = self.dir / f"fires-{os.getpid()}.tsv"
        with path.open("a", encoding="utf-8") as fh:
            fh.writelines(f"{k}\t{o}\t{d}\t{t:.3f}\n" for k, o, d, t in fires)
