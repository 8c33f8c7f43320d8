"""The SLI store: Prometheus-shaped series, label reduction, downsampling, persistence."""

from __future__ import annotations

from pathlib import Path

from falcon_platform.observability import names
from falcon_platform.observability.aggregate import WorkerExposition, merge_expositions
from falcon_platform.observability.sli_store import SLIStore, extract_sli_points

EXPOSITION = """\
# HELP falcon_requests_total Requests.
# TYPE falcon_requests_total counter
falcon_requests_total{worker="w1",release="r1",endpoint="/infer",status="200",cache="miss"} 7.0
falcon_requests_total{worker="w1",release="r1",endpoint="/infer",status="200",cache="hit"} 3.0
falcon_requests_total{worker="w1",release="r1",endpoint="/infer/batch",status="500",cache="none"} 1.0
# HELP falcon_request_duration_seconds Latency.
# TYPE falcon_request_duration_seconds histogram
falcon_request_duration_seconds_bucket{worker="w1",release="r1",endpoint="/infer",le="0.005"} 4.0
falcon_request_duration_seconds_bucket{worker="w1",release="r1",endpoint="/infer",le="+Inf"} 10.0
falcon_request_duration_seconds_bucket{worker="w1",release="r1",endpoint="/infer/batch",le="0.005"} 0.0
falcon_request_duration_seconds_bucket{worker="w1",release="r1",endpoint="/infer/batch",le="+Inf"} 1.0
falcon_request_duration_seconds_count{worker="w1",release="r1",endpoint="/infer"} 10.0
falcon_request_duration_seconds_sum{worker="w1",release="r1",endpoint="/infer"} 0.2
# HELP falcon_process_resident_memory_bytes RSS.
# TYPE falcon_process_resident_memory_bytes gauge
falcon_process_resident_memory_bytes{worker="w1",release="r1"} 1.5e+08
# HELP falcon_batch_size Not an SLI.
# TYPE falcon_batch_size histogram
falcon_batch_size_bucket{worker="w1",release="r1",le="+Inf"} 3.0
falcon_batch_size_count{worker="w1",release="r1"} 3.0
falcon_batch_size_sum{worker="w1",release="r1"} 9.0
"""


def test_extract_sums_away_endpoint_and_cache_and_keeps_le() -> None:
    """High-cardinality labels are summed away; histogram buckets keep `le`; non-SLI families dropped."""
    points = {
        (n, tuple(sorted(lab.items()))): v
        for n, lab, v, _ in extract_sli_points(EXPOSITION, worker="w1", release="r1")
    }
    base = (("release", "r1"), ("worker", "w1"))
    assert points[(names.REQUESTS, tuple(sorted((*base, ("status", "200")))))] == 10.0
    assert points[(names.REQUESTS, tuple(sorted((*base, ("status", "500")))))] == 1.0
    bucket = names.REQUEST_DURATION + "_bucket"
    assert points[(bucket, tuple(sorted((*base, ("le", "+Inf")))))] == 11.0
    assert points[(bucket, tuple(sorted((*base, ("le", "0.005")))))] == 4.0
    assert points[(names.RSS, base)] == 1.5e8
    assert not any(n.startswith("falcon_batch_size") for n, _ in points)


def test_query_by_label_match_and_window(tmp_path: Path) -> None:
    store = SLIStore(tmp_path / "sli.db", retention_s=7 * 86400)
    for i in range(5):
        store.ingest_exposition(1000.0 + i, EXPOSITION, worker="w1", release="r1")
    store.record(
        1002.0, names.WORKER_RESTARTS, {"worker": "w1", "release": "r1"}, 2.0, kind="counter"
    )
    series = store.query(names.REQUESTS, 1001.0, 1003.0, {"status": "200"})
    assert len(series) == 1
    assert series[0].labels == {"worker": "w1", "release": "r1", "status": "200"}
    assert [t for t, _ in series[0].samples] == [1001.0, 1002.0, 1003.0]
    assert store.query(names.REQUESTS, 0, 2000, {"release": "r2"}) == []
    assert store.query(names.WORKER_RESTARTS, 0, 2000)[0].samples == ((1002.0, 2.0),)
    store.close()


def test_store_survives_reopen(tmp_path: Path) -> None:
    """A supervisor restart reopens the same file and sees the same series."""
    store = SLIStore(tmp_path / "sli.db", retention_s=86400)
    store.record(50.0, names.WORKER_RSS, {"worker": "w1", "release": "r1"}, 1.0, kind="gauge")
    store.close()
    again = SLIStore(tmp_path / "sli.db", retention_s=86400)
    again.record(51.0, names.WORKER_RSS, {"worker": "w1", "release": "r1"}, 2.0, kind="gauge")
    assert again.query(names.WORKER_RSS, 0, 100)[0].samples == ((50.0, 1.0), (51.0, 2.0))
    again.close()


def test_compact_downsamples_old_samples_and_applies_retention(tmp_path: Path) -> None:
    """Older than 1 h: one sample per minute (counters last, gauges max); past retention: gone."""
    store = SLIStore(tmp_path / "sli.db", retention_s=3 * 3600)
    labels = {"worker": "w1", "release": "r1"}
    now = 100_000.0
    start = now - 2 * 3600  # 2 h ago: 1 h of it must be downsampled
    for i in range(0, 7200, 1):
        store.record_many(
            start + i,
            [
                (names.REQUESTS, labels, float(i), "counter"),
                (names.RSS, labels, float(1000 + (i % 60)), "gauge"),
            ],
        )
    store.record(now - 4 * 3600, names.RSS, labels, 5.0, kind="gauge")  # past retention
    store.compact(now)
    counter = store.query(names.REQUESTS, 0, now)[0].samples
    old = [s for s in counter if s[0] < now - 3600]
    assert 55 <= len(old) <= 62  # about one per minute
    assert all(v == t - start for t, v in old)  # the last value of each minute, at its time
    gauge_old = [s for s in store.query(names.RSS, 0, now)[0].samples if s[0] < now - 3600]
    assert all(v == 1059.0 for _, v in gauge_old[1:-1])  # the minute's maximum
    assert min(t for t, _ in store.query(names.RSS, 0, now)[0].samples) >= now - 3 * 3600
    assert len([s for s in counter if s[0] >= now - 3600]) >= 3599  # the last hour stays raw
    store.close()


def test_merge_expositions_one_help_type_per_family() -> None:
    """Aggregated /metrics: every worker's samples under one HELP/TYPE, labels added if missing."""
    w2 = EXPOSITION.replace('worker="w1"', 'worker="w2"')
    bare = "# HELP falcon_queue_depth Q.\n# TYPE falcon_queue_depth gauge\nfalcon_queue_depth 3.0\n"
    text = merge_expositions(
        [
            WorkerExposition("w1", "r1", EXPOSITION),
            WorkerExposition("w2", "r1", w2),
            WorkerExposition("w3", "r2", bare),
        ]
    )
    assert text.count("# TYPE falcon_requests_total counter") == 1
    assert text.count("# TYPE falcon_request_duration_seconds histogram") == 1
    assert 'worker="w2"' in text
    assert 'falcon_queue_depth{release="r2",worker="w3"} 3.0' in text
