"""The targets the benchmark judges each run by: the speed issue's and the raw-key issue's.

Each target reads the results of one run (BullMQ's from the same run where a target is a
ratio to it) and says met, not met, or not measured.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.model import Result

Results = dict[tuple[str, str], Result]
Verdict = tuple[bool, str] | None


@dataclass(frozen=True, slots=True)
class Target:
    """One target: a description and how to judge it from the results."""

    text: str
    check: Callable[[Results], Verdict]


def _drained(rs: Results, system: str, scenario: str) -> Result | None:
    r = rs.get((system, scenario))
    return r if r is not None and r.drain_s else None


def _burst(scenario: str, limit_s: float, ratio: float) -> Callable[[Results], Verdict]:
    def check(rs: Results) -> Verdict:
        r = _drained(rs, "reminderd-1", scenario)
        if r is None or r.drain_s is None:
            return None
        peer = _drained(rs, "bullmq", scenario)
        times = (peer.drain_s or 0) / r.drain_s if peer else None
        ok = r.drain_s <= limit_s or (times is not None and times >= ratio)
        against = f", {times:.1f}× BullMQ ({peer.drain_s:.2f} s)" if peer and times else ""
        return ok and r.lost == 0, f"drain {r.drain_s:.2f} s{against}"

    return check


def _cpu(rs: Results) -> Verdict:
    r = _drained(rs, "reminderd-1", "burst100k") or _drained(rs, "reminderd-1", "burst20k")
    if r is None:
        return None
    worker, redis = r.cpu_per_fire_us(r.worker_cpu_s), r.cpu_per_fire_us(r.redis_cpu_s)
    if worker is None or redis is None:
        return None
    return worker <= 25 and redis <= 12, f"{worker:.0f} µs / {redis:.0f} µs ({r.scenario})"


def _memory(rs: Results) -> Verdict:
    r = rs.get(("reminderd-1", "burst100k")) or rs.get(("reminderd-1", "burst20k"))
    if r is None or r.bytes_per_reminder is None:
        return None
    peer = rs.get(("bullmq", r.scenario))
    third = f", BullMQ {peer.bytes_per_reminder:.0f} B" if peer and peer.bytes_per_reminder else ""
    ok = r.bytes_per_reminder <= 250 or bool(
        peer and peer.bytes_per_reminder and r.bytes_per_reminder * 3 <= peer.bytes_per_reminder
    )
    return ok, f"{r.bytes_per_reminder:.0f} B ({r.scenario}){third}"


def _schedule_rate(rs: Results) -> Verdict:
    r = rs.get(("reminderd-1", "burst100k")) or rs.get(("reminderd-1", "burst20k"))
    if r is None or r.schedule_rate is None:
        return None
    return r.schedule_rate >= 60_000, f"{r.schedule_rate:,.0f}/s ({r.scenario})"


def _recovery(rs: Results) -> Verdict:
    r = _drained(rs, "reminderd-1", "recovery")
    if r is None or r.drain_s is None:
        return None
    return r.drain_s <= 3.0 and r.lost == 0, f"{r.drain_s:.2f} s after start"


def _more_daemons(rs: Results) -> Verdict:
    one, two = _drained(rs, "reminderd-1", "burst100k"), _drained(rs, "reminderd-2", "burst100k")
    if one is None or two is None or one.drain_s is None or two.drain_s is None:
        return None
    speedup = one.drain_s / two.drain_s
    text, ok = f"{one.drain_s:.2f} s → {two.drain_s:.2f} s ({speedup:.2f}×)", speedup >= 1.7
    three = _drained(rs, "reminderd-3", "burst100k")
    if three is not None and three.drain_s is not None:
        text += f"; three daemons {three.drain_s:.2f} s"
        ok = ok and three.drain_s <= two.drain_s * 1.1  # not slower than two, beyond noise
    return ok, text


def _lateness(scenario: str, which: str, limit_ms: float, said: str) -> Callable[[Results], Verdict]:
    """Met when reminderd-1's lateness ``which`` (p99, max) in ``scenario`` is within ``limit_ms``."""

    def check(rs: Results) -> Verdict:
        r = rs.get(("reminderd-1", scenario))
        if r is None or not r.lateness_ms:
            return None
        late = r.lateness_ms[which]
        return late <= limit_ms and r.lost == 0, said.format(late=late)

    return check


def _raw_vs_api(rs: Results) -> Verdict:
    raw, api = _drained(rs, "reminderd-1", "raw100k"), _drained(rs, "reminderd-1", "burst100k")
    if raw is None or api is None or raw.drain_s is None or api.drain_s is None:
        return None
    ok = raw.drain_s <= api.drain_s * 1.1 and raw.lost == 0 and raw.dup == 0
    return ok, f"raw {raw.drain_s:.2f} s, API {api.drain_s:.2f} s"


def _raw_among_million(rs: Results) -> Verdict:
    r = _drained(rs, "reminderd-1", "raw20k+1M")
    if r is None or r.drain_s is None:
        return None
    return r.drain_s <= 1.5 and r.lost == 0 and r.dup == 0, f"drain {r.drain_s:.2f} s, lost {r.lost}"


def _exactly_once(rs: Results) -> Verdict:
    mine = [r for (s, _), r in rs.items() if s.startswith("reminderd")]
    if not mine:
        return None
    lost, dup = sum(r.lost for r in mine), sum(r.dup for r in mine)
    return lost == 0 and dup == 0, f"lost {lost}, dup {dup} over {len(mine)} runs"


_steady = _lateness("steady", "p99", 20, "p99 {late:.0f} ms")
_raw_lazy = _lateness("raw20k-lazy", "max", 1000, "latest {late:.0f} ms after due")

TARGETS = [
    Target("20 000 due at one instant, one daemon: ≤ 0.6 s (or ≥ 5× BullMQ)", _burst("burst20k", 0.6, 5.0)),
    Target(
        "100 000 due at one instant, one daemon: ≤ 3.0 s (or ≥ 2.5× BullMQ)", _burst("burst100k", 3.0, 2.5)
    ),
    Target("daemon CPU per fire ≤ 25 µs / Redis CPU per fire ≤ 12 µs", _cpu),
    Target("Redis memory per scheduled one-shot ≤ 250 B (or ≤ ⅓ BullMQ)", _memory),
    Target("bulk scheduling through the API ≥ 60 000/s", _schedule_rate),
    Target("100 000 missed reminders recovered ≤ 3.0 s after start", _recovery),
    Target("second daemon ≥ 1.7× on the 100k burst; a third not slower", _more_daemons),
    Target("steady 1 000/s, lateness p99 ≤ 20 ms", _steady),
    Target("raw keys: 100 000 at one instant drained no slower than the API path", _raw_vs_api),
    Target("raw keys: 20 000 among 1 000 000 raw keys drained ≤ 1.5 s", _raw_among_million),
    Target(
        "raw keys, lazy expiry only: every key fired within 1 s of due",
        _lateness("raw20k-lazy", "max", 1000, "latest {late:.0f} ms after due"),
    ),
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
