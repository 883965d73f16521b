"""The two ways an occurrence can go, for the tests that must hold on both."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pipeline import harness


@pytest.fixture(params=["alone", "together"])
def both_paths(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test once with single processors (a task per occurrence) and once with their batch forms."""
    harness.TOGETHER = request.param == "together"
    try:
        yield request.param
    finally:
        harness.TOGETHER = False
