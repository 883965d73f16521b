"""The table, the targets of the issue, and the results files."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.model import Result

RESULTS = Path(__file__).resolve().parent / "results"
BULLMQ = "bullmq"
HEADER = (
    "system",
    "scenario",
    "N",
    "sched s",
    "sched/s",
    "drain s",
    "settle s",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "max ms",
    "B/rem",
    "worker µs/fire",
    "Redis µs/fire",
    "drain vs BullMQ",
    "lost",
    "dup",
)


def _f(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _vs_bullmq(r: Result, bullmq: Result | None) -> str:
    """This row's drain time over BullMQ's in the same scenario (below 1: faster than BullMQ)."""
    if bullmq is None or not bullmq.drain_s or r.drain_s is None or bullmq.lost:
        return "–"
    return f"{r.drain_s / bullmq.drain_s:.2f}×"


def row(r: Result, bullmq: Result | None = None) -> list[str]:
    """One table row; ``bullmq`` is BullMQ's row of the same scenario, if it ran."""
    late = r.lateness_ms
    return [
        r.system,
        r.scenario,
        f"{r.n:,}",
        _f(r.schedule_s),
        _f(r.schedule_rate, 0),
        _f(r.drain_s),
        _f(r.settle_s),
        *(_f(late.get(q), 0) for q in ("p50", "p95", "p99", "max")),
        _f(r.bytes_per_reminder, 0) if r.scenario != "steady" else "–",
        _f(r.cpu_per_fire_us(r.worker_cpu_s), 0),
        _f(r.cpu_per_fire_us(r.redis_cpu_s), 0),
        _vs_bullmq(r, bullmq),
        str(r.lost),
        str(r.dup),
    ]


def table(results: Sequence[Result]) -> str:
    """A Markdown table (readable as plain text too)."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|"]
    bullmq = {r.scenario: r for r in results if r.system == BULLMQ}
    lines += ["| " + " | ".join(row(r, bullmq.get(r.scenario))) + " |" for r in results]
    return "\n".join(lines)


def targets_md(verdicts: list[dict[str, Any]]) -> str:
    """The targets as a Markdown list."""
    return "\n".join(f"- **{v['status']}** — {v['target']}: {v['measured']}" for v in verdicts)


def notes_md(results: Sequence[Result]) -> str:
    """Per-run notes (overruns, crashes, unknown keys)."""
    lines = [f"- {r.system} / {r.scenario}: {note}" for r in results for note in r.notes]
    return "\n".join(lines) or "- none"


def logging_cost(results: Sequence[Result]) -> str:
    """How much per-fire info logging costs, from the ``reminderd-1-info`` runs."""
    by_key = {(r.system, r.scenario): r for r in results}
    lines = []
    for (system, scenario), info in by_key.items():
        base = by_key.get(("reminderd-1", scenario))
        if system != "reminderd-1-info" or base is None or not (base.drain_s and info.drain_s):
            continue
        p99, p99_info = base.lateness_ms.get("p99", 0.0), info.lateness_ms.get("p99", 0.0)
        lines.append(
            f"- {scenario}: drain {base.drain_s:.2f} s at warning level, {info.drain_s:.2f} s with one"
            f" info line per fire ({(info.drain_s / base.drain_s - 1) * 100:+.0f} %);"
            f" p99 {p99:.0f} → {p99_info:.0f} ms"
        )
    return "\n".join(lines) or "- not measured in this run"


def load_results(path: Path) -> tuple[list[Result], dict[str, Any]]:
    """Results and run facts from a results JSON file (to render it again)."""
    data = json.loads(path.read_text())
    fields = set(Result.__dataclass_fields__)
    results = [Result(**{k: v for k, v in row.items() if k in fields}) for row in data["results"]]
    meta = {k: v for k, v in data.items() if k not in ("results", "targets")}
    return results, meta


def write_results(
    results: Sequence[Result], meta: dict[str, Any], verdicts: list[dict[str, Any]], *, stem: str = "latest"
) -> None:
    """``<stem>.json`` and ``<stem>.md`` under ``bench/results``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {**meta, "targets": verdicts, "results": [r.as_json() for r in results]}
    (RESULTS / f"{stem}.json").write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    m = meta["machine"]
    text = [
        f"# Benchmark results ({meta['mode']} run, {meta['finished']})",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['os']}; "
        f"Python {m['python']}, redis-py {m['redis_py']}, redis-server {m['redis_server']}. "
        f"Load average (1 min) before/after the run: {meta['loadavg_1m_before_after']}; "
        f"the run took {meta['duration_s']:.0f} s.",
        "",
        table(results),
        "",
        "## Targets",
        "",
        targets_md(verdicts),
        "",
        "## Cost of info logging",
        "",
        logging_cost(results),
        "",
        "## Notes",
        "",
        notes_md(results),
        "",
    ]
    (RESULTS / f"{stem}.md").write_text("\n".join(text))
