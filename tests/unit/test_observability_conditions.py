"""Alert conditions (``observability.conditions``): which label sets each one is true for, at
its edges, over hand-built series; and the PromQL text each one renders.

Counters are built as exact lines (value = rate x t, sampled every 15 s across the whole
window), so ``rate`` is the slope by plain arithmetic and every expected value below is worked
out by hand. ``tests/promtool`` checks Prometheus agrees with the same conditions on scenarios.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from falcon_platform.observability.conditions import (
    Absent,
    CounterIncrease,
    DistinctValues,
    ErrorRatio,
    GaugeCompare,
    MemoryGrowth,
    MemoryRatio,
    Vector,
    label_key,
    number,
)
from falcon_platform.observability.sli_source import Series

NOW = 100_000.0
LOOKBACK = 300.0
REQUESTS = "falcon_requests_total"
RSS = "falcon_worker_resident_memory_bytes"  # sampled by the supervisor
OWN_RSS = "falcon_process_resident_memory_bytes"  # a worker's own gauge (a lone pod)
LIMIT = "falcon_memory_limit_bytes"


@dataclass
class Reader:
    """The condition's view of the SLI store: a fixed set of series at ``NOW``."""

    found: list[Series]
    now: float = NOW
    lookback: float = LOOKBACK
    memo: dict[Any, Any] = field(default_factory=dict)

    def series(self, name: str) -> list[Series]:
        return [s for s in self.found if s.name == name]


def counter(name: str, per_s: float, span: float = 3600.0, **labels: str) -> Series:
    """A counter growing ``per_s`` a second, sampled every 15 s over ``span`` up to NOW."""
    steps = int(span // 15)
    samples = [(NOW - span + 15 * i, per_s * 15 * i) for i in range(steps + 1)]
    return Series(name, labels, samples)


def gauge(name: str, value: float, at: float = NOW, **labels: str) -> Series:
    return Series(name, labels, [(at, value)])


def requests(ok_per_s: float, errors_per_s: float, error_status: str = "500") -> list[Series]:
    return [
        counter(REQUESTS, ok_per_s, worker="w1", release="r1", status="200"),
        counter(REQUESTS, errors_per_s, worker="w1", release="r1", status=error_status),
    ]


# --- helpers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "by", "expected"),
    [
        ({"worker": "w1", "release": "r1", "x": "y"}, ("worker", "release"),
         (("release", "r1"), ("worker", "w1"))),
        ({"worker": "w1"}, ("worker", "release"), (("worker", "w1"),)),  # absent: dropped
        ({"worker": "w1", "release": ""}, ("worker", "release"), (("worker", "w1"),)),  # empty
        ({"worker": "w1"}, (), ()),
    ],
)  # fmt: skip
def test_label_key_groups_like_sum_by(
    labels: Mapping[str, str], by: tuple[str, ...], expected: tuple[tuple[str, str], ...]
) -> None:
    assert label_key(labels, by) == expected


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.1 + 0.2, "0.3"), (14.4, "14.4"), (0.001, "0.001"), (0, "0"), (1e12, "1e+12"), (0.9, "0.9")],
)
def test_number_writes_thresholds_without_float_noise(value: float, text: str) -> None:
    assert number(value) == text


# --- ErrorRatio -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ok", "errors", "status", "threshold", "min_rps", "expected"),
    [
        (9.0, 1.0, "500", 0.05, 0.0, {(): 0.1}),
        (9.0, 1.0, "500", 0.1, 0.0, {}),  # exactly at the threshold: not above it
        (9.0, 1.0, "503", 0.05, 0.0, {(): 0.1}),  # any 5xx
        (9.0, 1.0, "404", 0.05, 0.0, {}),  # a 4xx is the client's error, not ours
        (9.0, 1.0, "5", 0.05, 0.0, {}),  # not a status code
        (0.0, 0.0, "500", 0.05, 0.0, {}),  # no traffic: the ratio is NaN, never true
        (0.0, 0.5, "500", 0.05, 1.0, {}),  # all errors, but 0.5 rps is under the guard
        (0.0, 1.0, "500", 0.05, 1.0, {(): 1.0}),  # exactly at the guard fires
    ],
)
def test_error_ratio_over_one_window(
    ok: float, errors: float, status: str, threshold: float, min_rps: float, expected: Vector
) -> None:
    cond = ErrorRatio(windows=(300.0,), threshold=threshold, min_rps=min_rps)
    result = cond.evaluate(Reader(requests(ok, errors, status)))
    assert result.keys() == expected.keys()
    for key, value in expected.items():
        assert math.isclose(result[key], value, rel_tol=1e-9)


def test_error_ratio_without_any_request_series_is_not_true() -> None:
    assert ErrorRatio(windows=(300.0,), threshold=0.0).evaluate(Reader([])) == {}


def test_error_ratio_needs_every_window_and_reports_the_first() -> None:
    """Errors only in the last 5 minutes of the hour: 1 h ratio 1/12 x 0.5 ..., 5 m ratio 0.5.

    ok 1/s for the hour; errors 1/s only in the last 300 s (a counter flat until then)."""
    ok = counter(REQUESTS, 1.0, worker="w1", release="r1", status="200")
    flat_then_rising = [(t, 0.0 if t <= NOW - 300 else t - (NOW - 300)) for t, _ in ok.samples]
    errors = Series(REQUESTS, {"worker": "w1", "release": "r1", "status": "500"}, flat_then_rising)
    reader = Reader([ok, errors])
    # 5 m: 1 error/s of 2 req/s = 0.5; 1 h: 300 errors of 3600 + 300 requests = 1/13
    short_first = ErrorRatio(windows=(300.0, 3600.0), threshold=0.05).evaluate(reader)
    assert math.isclose(short_first[()], 0.5, rel_tol=1e-9)
    assert ErrorRatio(windows=(300.0, 3600.0), threshold=0.1).evaluate(reader) == {}
    long_first = ErrorRatio(windows=(3600.0, 300.0), threshold=0.05).evaluate(reader)
    assert math.isclose(long_first[()], 300 / 3900, rel_tol=1e-9)


def test_error_ratio_promql() -> None:
    assert ErrorRatio(windows=(3600.0, 300.0), threshold=0.0144, min_rps=0.5).promql() == (
        "falcon:request_error_ratio:rate1h > 0.0144\n"
        "  and falcon:request_error_ratio:rate5m > 0.0144\n"
        "  and falcon:requests:rate1h >= 0.5"
    )
    assert ErrorRatio(windows=(60.0,), threshold=0.1).promql() == (
        "falcon:request_error_ratio:rate1m > 0.1"
    )


# --- memory -----------------------------------------------------------------------------------

W1 = (("release", "r1"), ("worker", "w1"))
W2 = (("release", "r1"), ("worker", "w2"))


@pytest.mark.parametrize(
    ("found", "expected"),
    [
        ([gauge(RSS, 950, worker="w1", release="r1"), gauge(LIMIT, 1000, worker="w1", release="r1")],
         {W1: 0.95}),
        # exactly at the ratio: not above it
        ([gauge(RSS, 900, worker="w1", release="r1"), gauge(LIMIT, 1000, worker="w1", release="r1")],
         {}),
        # a limit of 0 means none: never alerts, however big
        ([gauge(RSS, 5000, worker="w1", release="r1"), gauge(LIMIT, 0, worker="w1", release="r1")],
         {}),
        # no limit series at all
        ([gauge(RSS, 5000, worker="w1", release="r1")], {}),
        # a lone pod has only its own gauge
        ([gauge(OWN_RSS, 990, worker="w1", release="r1"),
          gauge(LIMIT, 1000, worker="w1", release="r1")], {W1: 0.99}),
        # both: the supervisor's sample wins (``or`` keeps the left side)
        ([gauge(RSS, 500, worker="w1", release="r1"), gauge(OWN_RSS, 990, worker="w1", release="r1"),
          gauge(LIMIT, 1000, worker="w1", release="r1")], {}),
        # a sample older than the lookback is gone
        ([gauge(RSS, 990, at=NOW - LOOKBACK - 1, worker="w1", release="r1"),
          gauge(LIMIT, 1000, worker="w1", release="r1")], {}),
        # a staleness marker (NaN) ends the series
        ([Series(RSS, {"worker": "w1", "release": "r1"}, [(NOW - 10, 990.0), (NOW, math.nan)]),
          gauge(LIMIT, 1000, worker="w1", release="r1")], {}),
        # per worker: only the one above
        ([gauge(RSS, 950, worker="w1", release="r1"), gauge(RSS, 100, worker="w2", release="r1"),
          gauge(LIMIT, 1000, worker="w1", release="r1"),
          gauge(LIMIT, 1000, worker="w2", release="r1")], {W1: 0.95}),
    ],
)  # fmt: skip
def test_memory_ratio(found: list[Series], expected: Vector) -> None:
    assert MemoryRatio(0.9).evaluate(Reader(found)) == pytest.approx(expected)


def _growing_rss(start: float, per_s: float, span: float = 600.0) -> Series:
    samples = [(NOW - span + 15 * i, start + per_s * 15 * i) for i in range(int(span // 15) + 1)]
    return Series(RSS, {"worker": "w1", "release": "r1"}, samples)


@pytest.mark.parametrize(
    ("limit", "floor", "expected"),
    [
        # 500 -> 560 over 10 min (0.1/s); in 1 h: 560 + 360 = 920
        (900.0, 0.5, {W1: 920.0}),  # reaches the limit; 560/900 = 0.62 above the floor
        (920.0, 0.5, {W1: 920.0}),  # reaches it exactly: >= fires
        (1000.0, 0.5, {}),  # does not reach it within the horizon
        (900.0, 0.7, {}),  # would, but 0.62 of the limit is below the floor
    ],
)
def test_memory_growth(limit: float, floor: float, expected: Vector) -> None:
    reader = Reader([_growing_rss(500.0, 0.1), gauge(LIMIT, limit, worker="w1", release="r1")])
    result = MemoryGrowth(floor=floor, window=600.0, horizon=3600.0).evaluate(reader)
    assert result == pytest.approx(expected)


def test_memory_ratio_promql_prefers_the_supervisors_sample() -> None:
    assert MemoryRatio(0.9).promql() == (
        "(\n"
        "  max by (worker, release) (falcon_worker_resident_memory_bytes)\n"
        "  or max by (worker, release) (falcon_process_resident_memory_bytes)\n"
        ")\n"
        "/ on (worker, release) (max by (worker, release) (falcon_memory_limit_bytes) > 0)\n"
        "> 0.9"
    )


# --- counters and gauges ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("found", "threshold", "expected"),
    [
        # 1 OOM kill a minute for the hour: 5 in the last 5 minutes
        ([counter("falcon_worker_oom_kills_total", 1 / 60, worker="w1", release="r1")], 0.0,
         {W1: 5.0}),
        ([counter("falcon_worker_oom_kills_total", 1 / 60, worker="w1", release="r1")], 5.0, {}),
        # a flat counter: increase 0 is not > 0
        ([counter("falcon_worker_oom_kills_total", 0.0, worker="w1", release="r1")], 0.0, {}),
        # one sample only: no increase can be computed
        ([gauge("falcon_worker_oom_kills_total", 3.0, worker="w1", release="r1")], 0.0, {}),
        # summed per (worker, release): two series of w1 add up
        ([counter("falcon_worker_oom_kills_total", 1 / 60, worker="w1", release="r1", x="a"),
          counter("falcon_worker_oom_kills_total", 1 / 60, worker="w1", release="r1", x="b"),
          counter("falcon_worker_oom_kills_total", 1 / 60, worker="w2", release="r1")], 6.0,
         {W1: 10.0}),
    ],
)  # fmt: skip
def test_counter_increase(found: list[Series], threshold: float, expected: Vector) -> None:
    cond = CounterIncrease("falcon_worker_oom_kills_total", window=300.0, threshold=threshold)
    assert cond.evaluate(Reader(found)) == pytest.approx(expected)


def test_counter_increase_promql() -> None:
    assert CounterIncrease("falcon_worker_oom_kills_total", window=300.0).promql() == (
        "sum by (worker, release) (increase(falcon_worker_oom_kills_total[5m])) > 0"
    )
    assert CounterIncrease("m_total", window=3600.0, by=(), threshold=2).promql() == (
        "sum(increase(m_total[1h])) > 2"
    )


LOOPS = [
    gauge("falcon_crash_loop", 1.0, release="r1"),
    gauge("falcon_crash_loop", 0.0, release="r2"),
]
WORKERS = [
    gauge("falcon_workers", 2.0, release="r1", state="ready"),
    gauge("falcon_workers", 1.0, release="r1", state="starting"),
    gauge("falcon_workers", 1.0, release="r2", state="ready"),
]


@pytest.mark.parametrize(
    ("cond", "found", "expected"),
    [
        (GaugeCompare("falcon_crash_loop", "max", ("release",), ">", 0), LOOPS,
         {(("release", "r1"),): 1.0}),
        (GaugeCompare("falcon_crash_loop", "max", ("release",), ">=", 0), LOOPS,
         {(("release", "r1"),): 1.0, (("release", "r2"),): 0.0}),
        (GaugeCompare("falcon_workers", "sum", ("release",), "<", 3), WORKERS,
         {(("release", "r2"),): 1.0}),
        (GaugeCompare("falcon_workers", "sum", ("release",), "<=", 3), WORKERS,
         {(("release", "r1"),): 3.0, (("release", "r2"),): 1.0}),
        (GaugeCompare("falcon_workers", "sum", (), ">", 3), WORKERS, {(): 4.0}),
        (GaugeCompare("falcon_workers", "count", ("release",), ">", 1), WORKERS,
         {(("release", "r1"),): 2.0}),
        (GaugeCompare("falcon_workers", "sum", ("release",), "<", 2, {"state": "ready"}), WORKERS,
         {(("release", "r2"),): 1.0}),
        # no series: nothing is true (absence is Absent's job)
        (GaugeCompare("falcon_workers", "sum", ("release",), "<", 2), [], {}),
        # a stale sample is not read
        (GaugeCompare("falcon_crash_loop", "max", ("release",), ">", 0),
         [gauge("falcon_crash_loop", 1.0, at=NOW - LOOKBACK - 1, release="r1")], {}),
    ],
)  # fmt: skip
def test_gauge_compare(cond: GaugeCompare, found: list[Series], expected: Vector) -> None:
    assert cond.evaluate(Reader(found)) == expected


def test_gauge_compare_promql() -> None:
    cond = GaugeCompare("falcon_crash_loop", agg="max", by=("release",), op=">", threshold=0)
    assert cond.promql() == "max by (release) (falcon_crash_loop) > 0"
    matched = GaugeCompare("m", "sum", (), "<", 1.5, {"state": "ready", "release": "r1"})
    assert matched.promql() == 'sum(m{release="r1", state="ready"}) < 1.5'


# --- change and absence -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("found", "expected"),
    [
        ([gauge("falcon_model_info", 1, version="1"), gauge("falcon_model_info", 1, version="2")],
         {(): 2.0}),
        ([gauge("falcon_model_info", 1, version="1"), gauge("falcon_model_info", 1, version="1")],
         {}),
        # the old version was last seen before the window: no change within it
        ([gauge("falcon_model_info", 1, at=NOW - 601, version="1"),
          gauge("falcon_model_info", 1, version="2")], {}),
        ([gauge("falcon_model_info", 1, at=NOW - 600, version="1"),
          gauge("falcon_model_info", 1, version="2")], {(): 2.0}),  # closed range: included
        ([], {}),
    ],
)  # fmt: skip
def test_distinct_values(found: list[Series], expected: Vector) -> None:
    assert (
        DistinctValues("falcon_model_info", "version", window=600.0).evaluate(Reader(found))
        == expected
    )


def test_distinct_values_promql() -> None:
    assert DistinctValues("falcon_model_info", "version", 600.0).promql() == (
        "count(count by (version) (max_over_time(falcon_model_info[10m]))) > 1"
    )


UP = "falcon_supervisor_up"


@pytest.mark.parametrize(
    ("found", "expected"),
    [
        ([gauge(UP, 1.0)], {}),  # present with the value
        ([gauge(UP, 0.0)], {(): 1.0}),  # present with another value
        # went stale a minute ago, seen within the day
        ([Series(UP, {}, [(NOW - 120, 1.0), (NOW - 60, math.nan)])], {(): 1.0}),
        # stopped being scraped (last sample older than the lookback), seen within the day
        ([gauge(UP, 1.0, at=NOW - LOOKBACK - 1)], {(): 1.0}),
        # never seen (Kubernetes runs no supervisor): never fires
        ([], {}),
        # last seen more than a day ago: forgotten
        ([gauge(UP, 1.0, at=NOW - 86_401)], {}),
        # one of two series still says 1: not absent
        ([gauge(UP, 0.0, host="a"), gauge(UP, 1.0, host="b")], {}),
    ],
)
def test_absent(found: list[Series], expected: Vector) -> None:
    assert Absent(UP).evaluate(Reader(found)) == expected


def test_absent_promql() -> None:
    assert Absent(UP).promql() == (
        "absent(falcon_supervisor_up == 1)\nand on ()\n"
        "count(max_over_time(falcon_supervisor_up[1d])) > 0"
    )


@pytest.mark.parametrize(
    ("cond", "expected"),
    [
        (ErrorRatio(windows=(300.0, 3600.0), threshold=0.1), {REQUESTS: 3600.0}),
        (MemoryRatio(0.9), {RSS: 0.0, OWN_RSS: 0.0, LIMIT: 0.0}),
        (MemoryGrowth(0.5, 600.0, 3600.0), {RSS: 600.0, OWN_RSS: 600.0, LIMIT: 600.0}),
        (CounterIncrease("c_total", 300.0), {"c_total": 300.0}),
        (GaugeCompare("g", "max", (), ">", 0), {"g": 0.0}),
        (DistinctValues("g", "l", 600.0), {"g": 600.0}),
        (Absent("g", seen_within=7200.0), {"g": 7200.0}),
    ],
)
def test_each_condition_asks_for_the_history_it_reads(
    cond: Any, expected: dict[str, float]
) -> None:
    """``metrics()`` is how far back the evaluator queries each series: too short a span and
    the condition silently sees nothing."""
    assert cond.metrics() == expected
