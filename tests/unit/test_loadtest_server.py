"""Server side from the control API: parsing, counter resets, restarts, per-worker fits."""

from __future__ import annotations

import math

import pytest

from falcon_platform.loadtest.memory import MB
from falcon_platform.loadtest.server import (
    Snapshot,
    counter_increase,
    parse_metrics,
    parse_status,
    summarise,
)

EXPOSITION = """\
# HELP falcon_worker_oom_kills_total Workers OOM-killed (exit 137).
# TYPE falcon_worker_oom_kills_total counter
falcon_worker_oom_kills_total{worker="w1",release="r1"} 2.0
falcon_worker_oom_kills_total{worker="w2",release="r1"} 0.0
# TYPE falcon_queue_depth gauge
falcon_queue_depth{worker="w1",release="r1"} 7.0
falcon_queue_depth{worker="w2",release="r1"} 0.0
# TYPE falcon_errors_total counter
falcon_errors_total{worker="w1",release="r1",type="overloaded"} 30.0
falcon_errors_total{worker="w1",release="r1",type="invalid_input"} 4.0
falcon_requests_total{worker="w1",release="r1",endpoint="/infer",status="200",cache="miss"} 9.0
"""


def test_parse_metrics_keeps_only_oom_queue_and_overloaded() -> None:
    oom, queue, shed = parse_metrics(EXPOSITION)
    assert oom == {"w1": 2.0, "w2": 0.0}
    assert queue == {"w1": 7.0, "w2": 0.0}
    assert shed == {"w1": 30.0}


def test_parse_status_reads_the_worker_rows() -> None:
    [w] = parse_status({"workers": [{"worker": "w1", "pid": 42, "rss_bytes": 5 * MB,
                                     "memory_limit_bytes": 512 * MB, "restarts": 3,
                                     "state": "ready"}]})  # fmt: skip
    assert (w.worker, w.pid, w.rss_bytes, w.limit_bytes, w.restarts) == ("w1", 42, 5 * MB,
                                                                          512 * MB, 3)  # fmt: skip


@pytest.mark.parametrize(
    ("values", "increase"),
    [([0, 5, 9], 9), ([10, 12, 3, 4], 2 + 3 + 1), ([7], 0), ([], 0), ([5, 5], 0)],
)
def test_counter_increase_counts_a_reset_like_prometheus(
    values: list[float], increase: float
) -> None:
    assert counter_increase(values) == increase


def _snap(t: float, rss_mb: float, pid: int, restarts: int, oom: float, shed: float) -> Snapshot:
    [row] = parse_status({"workers": [{"worker": "w1", "pid": pid, "rss_bytes": int(rss_mb * MB),
                                       "memory_limit_bytes": 300 * MB, "restarts": restarts}]})  # fmt: skip
    return Snapshot(t, (row,), {"w1": oom}, {"w1": 1.0}, {"w1": shed})


def test_summarise_a_leak_killed_once() -> None:
    """10 MB/s from 100 MB, OOM-killed at 300 MB after 20 s, restarted: 600 MB/min, 1 kill."""
    snaps = []
    for t in range(30):
        killed = t >= 20
        snaps.append(_snap(t, 100 + 10 * (t - 20 if killed else t), 2 if killed else 1,
                           1 if killed else 0, 1 if killed else 0,
                           (t - 20) if killed else 3 * t))  # fmt: skip
    side = summarise(snaps)
    [w] = side.workers
    assert w.fit is not None
    assert w.fit.slope_mb_per_min == pytest.approx(600)
    assert (w.restarts, w.oom_kills, side.restarts, side.oom_kills) == (1, 1, 1, 1)
    # shed: 0..57 before the restart, the new process counts 0..9 again
    assert side.shed_requests == 57 + 9
    # last sample 190 MB, 110 MB to go at 600 MB/min
    assert w.time_to_limit_min == pytest.approx(110 / 600)
    assert side.memory_max_mb == pytest.approx(290)


def test_summarise_without_samples_says_so() -> None:
    side = summarise([])
    assert not side.reachable
    assert "no sample" in side.why
    assert side.time_to_limit_min is None


def test_flat_memory_never_reaches_the_limit() -> None:
    side = summarise([_snap(t, 150, 1, 0, 0, 0) for t in range(10)])
    assert side.workers[0].fit is not None
    assert side.workers[0].fit.slope_mb_per_min == pytest.approx(0)
    assert math.isinf(side.workers[0].time_to_limit_min)
