"""``reminderd status``: is anything firing, and is Redis set up so that nothing is lost?

One report serves people (aligned ``name: value`` lines plus warnings) and monitoring
(``--json`` and the exit code): 0 healthy, 4 no live daemon, 5 the oldest due reminder
is older than ``daemon.backlog_alert``. A daemon counts as alive while its heartbeat
score in ``ns:daemons`` is within three heartbeat intervals of Redis's clock.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import redis.asyncio as aioredis

from reminderd.api.timefmt import format_instant, format_relative, format_span, format_when
from reminderd.api.topology import topology_of, topology_rows
from reminderd.config.model import Settings
from reminderd.core.durations import format_ms
from reminderd.storage import epoch
from reminderd.storage.names import Names
from reminderd.storage.server import config_value, doctor, merge_flags, required_flags
from reminderd.storage.store import key_of
from reminderd.storage.topology import Topology

__all__ = ["collect", "format_instant", "format_relative", "format_span", "format_when", "render", "to_json"]

EXIT_HEALTHY = 0
EXIT_NO_DAEMON = 4
EXIT_BACKLOG = 5
ALIVE_INTERVALS = 3  # heartbeats a daemon may miss before it counts as gone
CLOCK_WARN_MS = 1000  # a daemon's host clock this far from Redis's is worth a warning


@dataclass(frozen=True, slots=True)
class DaemonInfo:
    """One live daemon instance, from its heartbeat."""

    instance: str
    beat_ms: int
    host: str = "?"
    pid: int | None = None
    version: str = "?"
    started_ms: int | None = None
    last_sweep_ms: int | None = None
    fired: int | None = None
    in_flight: int | None = None
    canary: str | None = None
    clock_offset_ms: int | None = None  # Redis's clock minus the daemon host's
    log_dropped: int | None = None  # log lines it could not write (stream full, closed)
    nodes: dict[str, str] | None = None  # on Cluster: its subscriber state per primary


@dataclass(slots=True)
class StatusReport:
    """Everything ``status`` shows; ``exit_code`` turns it into a monitoring verdict."""

    redis: str
    now_ms: int
    redis_version: str
    role: str
    notifications: str | None
    notifications_ok: bool | None
    persistence: str
    maxmemory_policy: str | None
    scheduled: int
    due_now: int
    oldest_due_ms: int | None
    next_due_key: str | None
    next_due_ms: int | None
    dead_letters: int
    backlog_alert_ms: int
    daemons: list[DaemonInfo] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)
    data_lost_ms: int | None = None  # when a daemon last found this Redis's data set wiped
    topology: Topology | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def oldest_due_age_ms(self) -> int | None:
        """How late the oldest unclaimed due reminder is."""
        return None if self.oldest_due_ms is None else self.now_ms - self.oldest_due_ms

    @property
    def exit_code(self) -> int:
        """0 healthy, 4 no live daemon (checked first: it explains a backlog), 5 stale backlog."""
        if not self.daemons:
            return EXIT_NO_DAEMON
        age_ms = self.oldest_due_age_ms
        if age_ms is not None and age_ms > self.backlog_alert_ms:
            return EXIT_BACKLOG
        return EXIT_HEALTHY


async def collect(client: aioredis.Redis, settings: Settings, target: str) -> StatusReport:
    """Read the index, dead letters, heartbeats and server settings; no writes."""
    names = Names(settings.namespace)
    sec, usec = await client.time()
    now_ms = int(sec) * 1000 + int(usec) // 1000
    info = await client.info()
    flags = await config_value(client, "notify-keyspace-events")
    required = required_flags(settings.daemon.raw_key_events)
    async with client.pipeline(transaction=False) as pipe:
        pipe.zcard(names.due)
        pipe.zcount(names.due, "-inf", now_ms)
        pipe.zrange(names.due, 0, 0, withscores=True)
        pipe.xlen(names.dead)
        pipe.hgetall(names.stats)
        total, due, first, dead, stats = await pipe.execute()
    first_key, first_ms = (key_of(first[0][0]), int(first[0][1])) if first else (None, None)
    report = StatusReport(
        redis=target,
        now_ms=now_ms,
        redis_version=str(info.get("redis_version", "?")),
        role=str(info.get("role", "?")),
        notifications=flags,
        notifications_ok=None if flags is None else merge_flags(flags, required) == flags,
        persistence=await _persistence(client, info),
        maxmemory_policy=await config_value(client, "maxmemory-policy"),
        scheduled=int(total),
        due_now=int(due),
        oldest_due_ms=first_ms if due and first_ms is not None else None,
        next_due_key=first_key,
        next_due_ms=first_ms,
        dead_letters=int(dead),
        backlog_alert_ms=settings.daemon.backlog_alert_ms,
        stats={k: int(v) for k, v in stats.items() if str(v).lstrip("-").isdigit()},
    )
    report.daemons = await live_daemons(client, names, now_ms, settings.daemon.heartbeat_interval_ms)
    loss = await epoch.last_loss(client, names)
    report.data_lost_ms = int(loss["at_ms"]) if loss and isinstance(loss.get("at_ms"), int) else None
    report.topology, extra = await topology_of(client, settings.redis, target)
    report.warnings = status_warnings(report) + extra + await doctor(client)
    return report


async def _persistence(client: aioredis.Redis, info: dict[str, Any]) -> str:
    """``aof (appendfsync everysec)``, ``rdb (save 3600 1)``, both, or ``none``."""
    parts = []
    if int(info.get("aof_enabled", 0)):
        fsync = await config_value(client, "appendfsync")
        parts.append(f"aof (appendfsync {fsync})" if fsync else "aof")
    save = await config_value(client, "save")
    if save:
        parts.append(f"rdb (save {save})")
    elif save is None:
        parts.append("rdb unknown (CONFIG not allowed)")
    return " + ".join(parts) or "none"


async def live_daemons(
    client: aioredis.Redis, names: Names, now_ms: int, interval_ms: int
) -> list[DaemonInfo]:
    """Instances whose last heartbeat is within ``ALIVE_INTERVALS`` intervals of now. Their
    heartbeats by a pipeline of GETs, not one MGET: on Cluster the keys are in many slots."""
    raw: Any = await client.zrangebyscore(
        names.daemons, now_ms - ALIVE_INTERVALS * interval_ms, "+inf", withscores=True
    )
    rows = [(str(instance), int(score)) for instance, score in raw or []]
    if not rows:
        return []
    async with client.pipeline(transaction=False) as pipe:
        for instance, _ in rows:
            pipe.get(names.heartbeat(instance))
        bodies = await pipe.execute()
    return [daemon_info(instance, score, body) for (instance, score), body in zip(rows, bodies, strict=True)]


def daemon_info(instance: str, score_ms: int, body: str | None) -> DaemonInfo:
    """One instance from its heartbeat body (unknown fields dropped, a bad body empty)."""
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    known = {k: v for k, v in data.items() if k in DaemonInfo.__dataclass_fields__}
    known.pop("instance", None)
    known["beat_ms"] = score_ms
    return DaemonInfo(instance=instance, **known)


def status_warnings(report: StatusReport) -> list[str]:
    """What the report's figures say is wrong (no daemon, a late backlog, lost data, ...)."""
    found = []
    if not report.daemons:
        found.append("no live daemon: nothing fires until one runs (reminderd run)")
    age_ms = report.oldest_due_age_ms
    if age_ms is not None and age_ms > report.backlog_alert_ms:
        found.append(
            f"oldest due reminder is {format_span(age_ms)} late "
            f"(alert above {format_ms(report.backlog_alert_ms)}): daemons are not keeping up"
        )
    if report.data_lost_ms is not None:
        found.append(
            f"Redis lost its data set {format_when(report.data_lost_ms, report.now_ms)} (a restart "
            "without persistence): reminders scheduled before then are gone; enable AOF"
        )
    for d in report.daemons:
        if d.clock_offset_ms is not None and abs(d.clock_offset_ms) > CLOCK_WARN_MS:
            side = "behind" if d.clock_offset_ms > 0 else "ahead of"
            found.append(
                f"daemon {d.instance}: host clock {abs(d.clock_offset_ms) / 1000:.1f}s {side} Redis's "
                "(delivery follows Redis's clock; fix the host's time sync)"
            )
    if report.notifications_ok is False:
        found.append(
            f"notify-keyspace-events is {report.notifications!r}: expired events need E and x, "
            "raw-key events K and g; "
            "raw SET keys wait for the adoption scan and delivery relies on the sweep"
        )
    return found


def to_json(report: StatusReport) -> dict[str, Any]:
    """The report for ``status --json``, with ``exit_code`` and the derived age."""
    data = asdict(report)
    data["oldest_due_age_ms"] = report.oldest_due_age_ms
    data["exit_code"] = report.exit_code
    return data


def render(report: StatusReport) -> list[str]:
    """Aligned ``name: value`` lines, one per live daemon, then ``warning:`` lines."""
    now = report.now_ms
    age = report.oldest_due_age_ms
    rows: list[tuple[str, str]] = [
        ("redis", f"{report.redis} ({report.redis_version}, {report.role})"),
        ("notifications", _flags_text(report)),
        ("persistence", report.persistence),
        ("maxmemory-policy", report.maxmemory_policy or "unknown (CONFIG not allowed)"),
        ("scheduled", str(report.scheduled)),
        ("due now", str(report.due_now)),
        (
            "oldest due",
            "-" if age is None or report.oldest_due_ms is None else format_when(report.oldest_due_ms, now),
        ),
        ("next due", _next_text(report)),
        ("dead letters", str(report.dead_letters)),
        ("fired total", str(report.stats.get("fired", 0))),
        ("daemons", f"{len(report.daemons)} alive"),
    ]
    rows += [(f"  {d.instance}", _daemon_text(d, now)) for d in report.daemons]
    rows += topology_rows(report.topology) if report.topology else []
    lines = align(rows)
    return lines + [f"warning: {w}" for w in report.warnings]


def align(rows: list[tuple[str, str]]) -> list[str]:
    """``name: value`` lines with the values in one column; an empty name continues a value."""
    width = max((len(name) for name, _ in rows), default=0) + 2
    return [f"{name + ':' if name else '':<{width}}{value}" for name, value in rows]


def _flags_text(report: StatusReport) -> str:
    if report.notifications is None:
        return "unknown (CONFIG not allowed)"
    state = "expired events on" if report.notifications_ok else "expired events OFF"
    return f"{report.notifications or '(empty)'} ({state})"


def _next_text(report: StatusReport) -> str:
    if report.next_due_ms is None:
        return "-"
    return f"{report.next_due_key} at {format_when(report.next_due_ms, report.now_ms)}"


def _daemon_text(d: DaemonInfo, now_ms: int) -> str:
    """One daemon's line; its figures are what its last heartbeat said, and the line says when."""
    parts = [f"{d.host} pid {d.pid if d.pid is not None else '?'}", f"v{d.version}"]
    if d.started_ms is not None:
        parts.append(f"up {format_span(max(0, now_ms - d.started_ms))}")
    figures = []
    if d.last_sweep_ms is not None:
        figures.append(f"last sweep {max(0, d.beat_ms - d.last_sweep_ms) // 1000}s before")
    if d.fired is not None:
        figures.append(f"fired {d.fired}")
    if d.in_flight is not None:
        figures.append(f"in flight {d.in_flight}")
    if d.clock_offset_ms is not None:
        figures.append(f"clock offset {d.clock_offset_ms:+d}ms")
    if d.log_dropped:
        figures.append(f"log lines dropped {d.log_dropped}")
    heading = f"as of its heartbeat {max(0, now_ms - d.beat_ms) // 1000}s ago"
    parts.append(f"{heading}: {', '.join(figures)}" if figures else heading)
    return ", ".join(parts)
