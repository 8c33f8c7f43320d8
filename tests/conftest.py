"""Shared test configuration: keep it small; fixtures live beside the tests that use them.

``make test`` runs the suite in two phases: everything not marked ``serial`` in parallel
(pytest-xdist, one module per worker at a time, so module-scoped servers start once), then
the ``serial`` tests alone on a quiet machine. Serial are: every e2e test, every ``slow``
test, and modules that mark themselves (their assertions measure time, rates or a load the
machine must not share). Mark a new test ``pytest.mark.serial`` when it asserts a latency,
a rate or a reaction time, or drives enough load to disturb its neighbours.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_E2E = Path(__file__).parent / "e2e"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("serial") is not None:
            continue
        if _E2E in Path(str(item.path)).parents or item.get_closest_marker("slow") is not None:
            item.add_marker(pytest.mark.serial)
