"""What every part of the pipeline shares, and the one place settings are read from.

A reload replaces ``Context.runtime`` (settings and the processors built from them)
between two occurrences; an occurrence that started keeps the runtime it read first, so
it finishes with the processors it began with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from reminderd.config.model import Settings
from reminderd.processors.base import HttpClient, Processor
from reminderd.storage.store import Store
from reminderd.telemetry.metrics import Metrics


@dataclass(frozen=True, slots=True)
class Runtime:
    """What a reload may replace: settings and the processors built from them."""

    settings: Settings
    processors: Mapping[str, Processor]
    timeouts_s: Mapping[str, float]


class Context:
    """The store, the runtime in force, the metrics and this instance's id.

    Everything that reads a setting (dispatch, intake, recovery, housekeeping, the daemon)
    reads ``ctx.settings``, so a reload is seen everywhere at once and the same way.
    """

    def __init__(
        self, store: Store, runtime: Runtime, metrics: Metrics, instance: str, http: HttpClient | None = None
    ) -> None:
        self.store = store
        self.runtime = runtime
        self.metrics = metrics
        self.instance = instance
        self.http = http  # the processors' shared HTTP client: its queue holds claiming back

    @property
    def settings(self) -> Settings:
        """The settings in force."""
        return self.runtime.settings
