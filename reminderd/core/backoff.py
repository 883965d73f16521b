"""Backoff math for failed processors: exponential, capped, with jitter.

Jitter spreads retries of a burst that failed together (a provider outage) so they do
not return as one thundering herd; ``Retry-After`` from the provider is a floor.
"""

from __future__ import annotations

import random
from typing import Protocol


class BackoffPolicy(Protocol):
    """A rule's retry policy as configured (``config.model.RetrySettings`` is one)."""

    @property
    def backoff_ms(self) -> int: ...  # delay after the first failure
    @property
    def backoff_max_ms(self) -> int: ...  # cap of the exponential growth
    @property
    def jitter(self) -> float: ...  # +- fraction of the delay, to spread a failed burst


def backoff_ms(attempt: int, policy: BackoffPolicy, *, retry_after_s: float | None = None,
               rng: random.Random | None = None) -> int:  # fmt: skip
    """Delay before attempt ``attempt + 1`` (``attempt`` counts failures so far, from 1)."""
    base = min(policy.backoff_max_ms, policy.backoff_ms * (1 << min(40, max(0, attempt - 1))))
    spread = base * policy.jitter
    delay = base + (rng or random).uniform(-spread, spread)
    if retry_after_s is not None:
        delay = max(delay, retry_after_s * 1000)
    return max(1, round(delay))
