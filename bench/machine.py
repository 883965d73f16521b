"""Facts about the machine a run happened on, for the results files."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import redis

from tests.redis_server import find_redis_server


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or the platform's guess)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gib() -> float | None:
    """Total RAM in GiB."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def redis_version() -> str:
    """``redis-server --version`` of the binary the benchmark starts."""
    out = subprocess.run([find_redis_server(), "--version"], capture_output=True, text=True, check=False)
    for part in out.stdout.split():
        if part.startswith("v="):
            return part[2:]
    return out.stdout.strip()


def machine_facts() -> dict[str, Any]:
    """CPU, cores, RAM, OS, Python, redis-py and redis-server versions."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": memory_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "redis_py": redis.__version__,
        "redis_server": redis_version(),
    }
