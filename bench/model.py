"""What one (system, scenario) run produced, and how fires become numbers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

Fire = tuple[str, float]  # (trigger key, wall-clock epoch ms when it fired)


@dataclass(slots=True)
class Result:
    """One row of the table. Times in seconds, lateness in milliseconds."""

    system: str
    scenario: str
    n: int
    schedule_s: float | None = None
    drain_s: float | None = None  # last fire minus due instant (recovery: minus process start)
    settle_s: float | None = None  # all work completed as seen from outside, same origin
    lateness_ms: dict[str, float] = field(default_factory=dict)  # p50, p95, p99, max
    bytes_per_reminder: float | None = None
    fired: int = 0
    lost: int = 0
    dup: int = 0
    worker_cpu_s: float | None = None  # CPU of the system's own processes over the scenario
    redis_cpu_s: float | None = None  # CPU of its Redis server over the scenario
    notes: list[str] = field(default_factory=list)

    def cpu_per_fire_us(self, cpu_s: float | None) -> float | None:
        """Microseconds of ``cpu_s`` per reminder fired."""
        return None if cpu_s is None or not self.fired else cpu_s / self.fired * 1e6

    @property
    def schedule_rate(self) -> float | None:
        """Reminders scheduled per second."""
        if not self.schedule_s:
            return None
        return self.n / self.schedule_s

    def as_json(self) -> dict[str, Any]:
        """The row with its derived rate, for ``latest.json``."""
        return {**asdict(self), "schedule_rate": self.schedule_rate}


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, round(q / 100 * len(sorted_values) + 0.5 - 1e-9))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def score(result: Result, due_ms: Mapping[str, float], fires: Iterable[Fire]) -> dict[str, float]:
    """Fill lost, dup, fired and lateness of ``result``; returns each key's first fire time."""
    counts: Counter[str] = Counter()
    first: dict[str, float] = {}
    for key, at in fires:
        if key not in due_ms:
            result.notes.append(f"fired an unknown key {key!r}")
            continue
        counts[key] += 1
        if key not in first or at < first[key]:
            first[key] = at
    result.fired = len(first)
    result.dup = sum(c - 1 for c in counts.values())
    result.lost = len(due_ms) - len(first)
    late = sorted(first[k] - due_ms[k] for k in first)
    if late:
        result.lateness_ms = {
            "p50": percentile(late, 50),
            "p95": percentile(late, 95),
            "p99": percentile(late, 99),
            "max": late[-1],
        }
    return first


def read_fires(path: Path) -> list[Fire]:
    """Fire records from a TSV file: key in the first column, wall ms in the last."""
    if not path.exists():
        return []
    out: list[Fire] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        cols = line.split("\t")
        if len(cols) >= 2:
            out.append((cols[0], float(cols[-1])))
    return out


def write_fires(path: Path, fires: Iterable[Fire]) -> None:
    """The worker side of ``read_fires``."""
    with path.open("w", encoding="utf-8") as fh:
        fh.writelines(f"{k}\t{t:.3f}\n" for k, t in fires)
