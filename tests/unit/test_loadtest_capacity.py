"""Capacity search: the next rate is a pure function of the steps; the SLO verdict by table."""

from __future__ import annotations

import math

import pytest

from falcon_platform.config.spec import CapacitySpec, SLOSpec
from falcon_platform.loadtest.capacity import Step, next_rate, slo_verdict
from falcon_platform.loadtest.result import LoadResult, Percentiles
from falcon_platform.loadtest.server import ServerSide


def fake_result(p95: float = 10, p99: float = 20, errors: int = 0, dropped: int = 0,
                lag_p99: float = 0.1) -> LoadResult:  # fmt: skip
    lat = Percentiles(1000, 5, 8, p95, p99, p99 * 2, p99 * 3, 6)
    return LoadResult(
        target="http://x", model="open", endpoint="infer", texts="corpus", connections=64,
        planned_s=10, elapsed_s=10, started_at=0, scheduled=1000, sent=1000 - dropped,
        sent_late=0, dropped=dropped, responses=1000 - dropped, statuses={200: 1000 - dropped - errors, 500: errors},
        transport_errors={}, latency=lat, service=lat,
        lag=Percentiles(1000, 0.1, 0.1, 0.1, lag_p99, lag_p99, lag_p99, 0.1),
        series=(), server=ServerSide(False, "test"),
    )  # fmt: skip


def search(capacity: float, cfg: CapacitySpec) -> list[Step]:
    """Simulate a server whose SLO holds up to ``capacity`` req/s."""
    steps: list[Step] = []
    rate = next_rate(steps, cfg)
    while rate is not None:
        holds = rate <= capacity
        steps.append(Step(rate, holds, "" if holds else "p95", False, fake_result()))
        rate = next_rate(steps, cfg)
    return steps


def test_search_doubles_then_bisects_to_the_precision() -> None:
    cfg = CapacitySpec(start_rate=50, max_rate=5000, max_steps=20, precision=0.05)
    steps = search(730, cfg)
    assert [s.rate for s in steps[:6]] == [50, 100, 200, 400, 800, 600]
    best = max(s.rate for s in steps if s.holds)
    worst = min(s.rate for s in steps if not s.holds)
    assert best <= 730 < worst
    assert (worst - best) / worst <= 0.05


def test_search_is_bounded_by_max_steps_and_max_rate() -> None:
    assert len(search(730, CapacitySpec(start_rate=50, max_steps=4))) == 4
    steps = search(1e9, CapacitySpec(start_rate=50, max_rate=300, max_steps=20))
    assert [s.rate for s in steps] == [50, 100, 200, 300]


def test_search_halves_when_the_first_step_breaks() -> None:
    steps = search(30, CapacitySpec(start_rate=100, max_steps=20))
    assert [s.rate for s in steps[:3]] == [100, 50, 25]
    assert max(s.rate for s in steps if s.holds) <= 30


def test_a_generator_limited_step_ends_the_search() -> None:
    cfg = CapacitySpec()
    steps = [Step(50, True, "", False, fake_result()), Step(100, False, "lag", True, fake_result())]
    assert next_rate(steps, cfg) is None


@pytest.mark.parametrize(
    ("kw", "holds", "why"),
    [({}, True, ""), ({"p95": 600}, False, "p95_ms 600.0 ms > 500 ms"),
     ({"errors": 2}, False, "failure ratio 0.0020 > 0.001"),
     ({"dropped": 5}, False, "failure ratio 0.0050 > 0.001"),
     ({"p95": math.nan}, False, "p95_ms nan ms")],
)  # fmt: skip
def test_slo_verdict_by_hand_table(kw: dict[str, float], holds: bool, why: str) -> None:
    ok, text = slo_verdict(fake_result(**kw), SLOSpec(), None)  # type: ignore[arg-type]
    assert ok is holds
    assert why in text


def test_optional_p99_bound() -> None:
    assert slo_verdict(fake_result(p99=40), SLOSpec(), 30)[0] is False
    assert slo_verdict(fake_result(p99=20), SLOSpec(), 30)[0] is True
