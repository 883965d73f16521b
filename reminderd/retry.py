"""Backoff math for failed processors: exponential, capped, with jitter.

Jitter spreads retries of a burst that failed together (a provider outage) so they do
not return as one thundering herd; ``Retry-After`` from the provider is a floor.
"""

from __future__ import annotations

import random

from reminderd.config.model import RetrySettings


def backoff_ms(attempt: int, policy: RetrySettings, *, retry_after_s: float | None = None,
               rng: random.Random | None = None) -> int:  # fmt: skip
    """Delay before attempt ``attempt + 1`` (``attempt`` counts failures so far, from 1)."""
    base = min(policy.backoff_max_ms, policy.backoff_ms * (1 << min(40, max(0, attempt - 1))))
    spread = base * policy.jitter
    delay = base + (rng or random).uniform(-spread, spread)
    if retry_after_s is not None:
        delay = max(delay, retry_after_s * 1000)
    return max(1, round(delay))
