"""PromQL arithmetic ported to Python gives Prometheus's own answers (cases from promql/testdata)."""

import math

import pytest

from falcon_platform.observability import promql

MIN5 = 300.0


def _series(values: list[float], step: float = MIN5) -> list[tuple[float, float]]:
    return [(i * step, v) for i, v in enumerate(values)]


def test_increase_without_reset_matches_prometheus() -> None:
    """`http_requests{path="/foo"} 0+10x10` at 5m steps: increase over 50m at 50m is 100."""
    foo = _series([10.0 * i for i in range(11)])
    assert promql.increase(foo, 3000.0, 3000.0) == pytest.approx(100.0)


def test_increase_adds_what_was_counted_before_a_reset() -> None:
    """`0+10x5 0+10x5`: the counter restarts at 30m; increase over 50m is 90, not 40."""
    bar = _series([10.0 * i for i in range(6)] + [10.0 * i for i in range(6)])
    assert promql.increase(bar, 3000.0, 3000.0) == pytest.approx(90.0)


def test_rate_matches_prometheus_for_a_steady_counter() -> None:
    """`0+80x10` at 5m steps: rate over 50m at 50m is 0.2666... per second."""
    canary = _series([80.0 * i for i in range(11)])
    assert promql.rate(canary, 3000.0, 3000.0) == pytest.approx(0.26666666666666666)


def test_rate_extrapolates_to_the_window_edges_but_not_below_zero() -> None:
    """Samples 15 s apart inside a 60 s window: extrapolated like Prometheus's extrapolatedRate."""
    samples = [(10.0, 5.0), (25.0, 20.0), (40.0, 35.0), (55.0, 50.0)]
    # sampled 45 s, 45 increase; start gap 10 s < 1.1*15 -> +10, but zero point is 5 s away -> +5;
    # end gap 5 s -> +5: 45 * (45 + 5 + 5) / 45 / 60
    assert promql.rate(samples, 60.0, 60.0) == pytest.approx(55.0 / 60.0)


def test_rate_needs_two_samples() -> None:
    assert promql.rate([(0.0, 1.0)], 60.0, 60.0) is None
    assert promql.increase([], 60.0, 60.0) is None


def test_predict_linear_matches_prometheus_testdata() -> None:
    """`testcounter_reset_middle 0+10x4 0+10x5`: predict_linear([50m], 3600) at 50m = 76.82 (promtool 2.42)."""
    values = [10.0 * i for i in range(5)] + [10.0 * i for i in range(6)]
    assert promql.predict_linear(_series(values), 3000.0, 3000.0, 3600.0) == pytest.approx(
        76.81818181818181
    )


def test_predict_linear_of_a_flat_gauge_is_its_value() -> None:
    assert promql.predict_linear(_series([7.0, 7.0, 7.0]), 600.0, 600.0, 3600.0) == 7.0


def test_latest_looks_back_and_respects_staleness_markers() -> None:
    samples = [(0.0, 1.0), (15.0, 2.0)]
    assert promql.latest(samples, 60.0, 300.0) == 2.0
    assert promql.latest(samples, 400.0, 300.0) is None  # too old
    assert promql.latest([*samples, (30.0, math.nan)], 60.0, 300.0) is None  # series ended


def test_range_functions_skip_staleness_markers() -> None:
    samples = [(0.0, 0.0), (15.0, math.nan), (30.0, 30.0)]
    assert promql.increase(samples, 30.0, 30.0) == pytest.approx(30.0)
    assert promql.max_over_time(samples, 30.0, 30.0) == 30.0
