"""The table, the targets of the issue, and the results files."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class Target:
    """One target of the issue: a description and how to judge it from the results."""

    text: str
    check: Callable[[dict[tuple[str, str], Result]], tuple[bool, str] | None]


def _get(rs: dict[tuple[str, str], Result], system: str, scenario: str) -> Result | None:
    return rs.get((system, scenario))


def _burst20k(rs: dict[tuple[str, str], Result]) -> tuple[bool, str] | None:
    r = _get(rs, "reminderd-1", "burst20k")
    if r is None or r.drain_s is None:
        return None
    p99 = r.lateness_ms.get("p99", float("inf"))
    ok = r.drain_s <= 1.0 and p99 <= 1000 and r.lost == 0
    return ok, f"drain {r.drain_s:.2f} s, p99 {p99:.0f} ms"


def _steady(rs: dict[tuple[str, str], Result]) -> tuple[bool, str] | None:
    r = _get(rs, "reminderd-1", "steady")
    if r is None or not r.lateness_ms:
        return None
    p99 = r.lateness_ms["p99"]
    return p99 <= 50 and r.lost == 0, f"p99 {p99:.0f} ms"


def _memory(rs: dict[tuple[str, str], Result]) -> tuple[bool, str] | None:
    r = _get(rs, "reminderd-1", "burst100k") or _get(rs, "reminderd-1", "burst20k")
    if r is None or r.bytes_per_reminder is None:
        return None
    return r.bytes_per_reminder <= 350, f"{r.bytes_per_reminder:.0f} B ({r.scenario})"


def _schedule_rate(rs: dict[tuple[str, str], Result]) -> tuple[bool, str] | None:
    r = _get(rs, "reminderd-1", "burst100k") or _get(rs, "reminderd-1", "burst20k")
    if r is None or r.schedule_rate is None:
        return None
    return r.schedule_rate >= 20_000, f"{r.schedule_rate:,.0f}/s ({r.scenario})"


def _recovery(rs: dict[tuple[str, str], Result]) -> tuple[bool, str] | None:
    r = _get(rs, "reminderd-1", "recovery")
    if r is None or r.drain_s is None:
        return None
    return r.drain_s <= 10 and r.lost == 0, f"{r.drain_s:.2f} s after start"


def _second_daemon(rs: dict[tuple[str, str], Result]) -> tuple[bool, str] | None:
    parts, ok = [], True
    for scenario in ("burst20k", "burst100k", "recovery"):
        one, two = _get(rs, "reminderd-1", scenario), _get(rs, "reminderd-2", scenario)
        if one and two and one.drain_s and two.drain_s:
            parts.append(f"{scenario} drain {one.drain_s:.2f} s → {two.drain_s:.2f} s")
            ok = ok and two.drain_s < one.drain_s
    return (ok, "; ".join(parts)) if parts else None


def _exactly_once(rs: dict[tuple[str, str], Result]) -> tuple[bool, str] | None:
    mine = [r for (s, _), r in rs.items() if s.startswith("reminderd")]
    if not mine:
        return None
    lost, dup = sum(r.lost for r in mine), sum(r.dup for r in mine)
    return lost == 0 and dup == 0, f"lost {lost}, dup {dup} over {len(mine)} runs"


TARGETS = [
    Target("20 000 due at one instant drained ≤ 1.0 s by one daemon, p99 ≤ 1 s", _burst20k),
    Target("steady 1 000/s with lateness p99 ≤ 50 ms", _steady),
    Target("≤ 350 bytes of Redis memory per scheduled reminder", _memory),
    Target("bulk scheduling through the API ≥ 20 000 reminders/s", _schedule_rate),
    Target("100 000 missed reminders recovered ≤ 10 s after start", _recovery),
    Target("a second daemon raises throughput", _second_daemon),
    Target("reminderd: nothing lost, nothing duplicated", _exactly_once),
]


def judge(results: Sequence[Result]) -> list[dict[str, Any]]:
    """Each target: met, not met, or not measured in this run."""
    by_key = {(r.system, r.scenario): r for r in results}
    out = []
    for t in TARGETS:
        verdict = t.check(by_key)
        status = "not measured" if verdict is None else ("met" if verdict[0] else "NOT MET")
        out.append({"target": t.text, "status": status, "measured": "" if verdict is None else verdict[1]})
    return out


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
