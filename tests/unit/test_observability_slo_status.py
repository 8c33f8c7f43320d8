"""SLO report and traffic arithmetic over plain series; expected values worked out by hand."""

from __future__ import annotations

import math

import pytest

from falcon_platform.config.spec import Spec
from falcon_platform.observability.sli_source import Series
from falcon_platform.observability.slo_status import (
    error_ratio,
    histogram_quantile,
    slo_report,
    traffic,
)

NOW = 10_000.0
HOUR = 3600.0


def counter(
    per_second: float, labels: dict[str, str], *, span: float = HOUR, step: float = 10.0
) -> Series:
    """A counter growing ``per_second`` from ``NOW - span`` to ``NOW``, sampled every ``step``."""
    n = int(span / step)
    samples = tuple((NOW - span + i * step, per_second * i * step) for i in range(n + 1))
    return Series("falcon_requests_total", labels, samples)


def test_histogram_quantile_interpolates_like_prometheus() -> None:
    buckets = [(0.1, 50.0), (0.2, 90.0), (math.inf, 100.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)  # 50th of 100: top of first
    assert histogram_quantile(0.7, buckets) == pytest.approx(0.15)  # 0.1 + 0.1 * 20/40
    assert histogram_quantile(0.95, buckets) == pytest.approx(0.2)  # +Inf: last finite bound
    assert histogram_quantile(0.5, []) is None
    assert histogram_quantile(0.5, [(0.1, 0.0), (math.inf, 0.0)]) is None


def test_error_ratio_and_no_traffic() -> None:
    requests = [counter(100, {"status": "200"}), counter(1, {"status": "503"})]
    assert error_ratio(requests, NOW, 300) == pytest.approx(1 / 101)
    assert error_ratio([counter(0, {"status": "200"})], NOW, 300) is None  # 0/0 is not 0
    assert error_ratio([], NOW, 300) is None


def test_slo_report_burn_rates_against_the_alert_thresholds() -> None:
    spec = Spec()  # 99.9%: budget 0.001; burn windows 14.4x (1h/5m), 6x (6h/30m), 1x (3d/6h)
    requests = [counter(100, {"status": "200"}), counter(1, {"status": "500"})]
    le = lambda v: {"le": v}  # noqa: E731
    buckets = [
        Series(b.name + "_bucket", b.labels, b.samples)
        for b in (counter(5, le("0.1")), counter(9, le("0.5")), counter(10, le("+Inf")))
    ]
    report = slo_report(spec, requests, buckets, NOW)
    a = report["availability"]
    burn = (1 / 101) / 0.001  # 9.90: the error ratio over the budget
    assert a["measured_s"] == pytest.approx(HOUR)  # only an hour of data, not 30 days
    assert a["error_ratio"] == pytest.approx(1 / 101)
    assert a["budget_remaining"] == pytest.approx(1 - burn)  # overspent: negative
    rows = {(w["long"], w["short"]): w for w in a["burn_windows"]}
    assert rows[("1h", "5m")]["long_burn"] == pytest.approx(burn)
    assert rows[("1h", "5m")]["over_threshold"] is False  # 9.9 < 14.4
    assert rows[("6h", "30m")]["over_threshold"] is True  # 9.9 > 6
    assert rows[("3d", "6h")]["over_threshold"] is True  # 9.9 > 1
    lat = report["latency"]
    # per second: 5 under 100 ms, 9 under 500 ms, 10 in all; p95 falls in +Inf -> 500 ms
    assert lat["p95_ms"] == pytest.approx(500.0)
    assert lat["good_ratio"] == pytest.approx(0.9)
    assert lat["met"] is True


def test_slo_report_without_traffic_says_so() -> None:
    report = slo_report(Spec(), [], [], NOW)
    assert report["availability"]["budget_remaining"] is None
    assert report["availability"]["measured_s"] == 0.0
    assert all(w["long_burn"] is None for w in report["availability"]["burn_windows"])
    assert report["latency"]["p95_ms"] is None
    assert report["latency"]["met"] is None


def test_traffic_points_over_the_last_hour() -> None:
    requests = [counter(20, {"status": "200"}, span=600), counter(5, {"status": "502"}, span=600)]
    chart = traffic(requests, [], NOW, span=HOUR, step=60)
    assert len(chart["t"]) == 60
    assert chart["t"][-1] == NOW
    assert chart["rps"][-1] == pytest.approx(25.0)
    assert chart["error_ratio"][-1] == pytest.approx(0.2)
    assert chart["rps"][0] is None
    assert chart["error_ratio"][0] is None
    assert chart["p99_ms"][-1] is None  # no histogram given
