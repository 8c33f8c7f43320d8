"""A worker's metrics (``serving.metrics``): for a known state, exactly which series the
exposition carries and with which values, read back through prometheus_client's parser.

Names are written out here (dashboards, rules and runbooks query them), not taken from
``observability.names``.
"""

from __future__ import annotations

import os

import pytest
from prometheus_client.parser import text_string_to_metric_families

from falcon_platform import __version__
from falcon_platform.serving.metrics import ServingMetrics, resident_bytes
from falcon_platform.stores.base import StoreStats

Key = tuple[str, tuple[tuple[str, str], ...]]
BASE = (("release", "r3"), ("worker", "w7"))


def exposition(metrics: ServingMetrics) -> dict[Key, float]:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain; version=")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def labels(**extra: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((*BASE, *extra.items())))


def named(series: dict[Key, float], name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {lbl: v for (n, lbl), v in series.items() if n == name}


@pytest.fixture
def metrics() -> ServingMetrics:
    return ServingMetrics(worker="w7", release="r3", profile="staging", memory_limit_bytes=512)


def test_a_fresh_worker_exposes_zeroed_series_for_every_hot_endpoint(
    metrics: ServingMetrics,
) -> None:
    """Every (endpoint, 200, hit/miss) counter and every endpoint's histogram exist at 0 from
    the start, so ``rate()`` sees the first request instead of a series that appears with it."""
    series = exposition(metrics)
    requests = named(series, "falcon_requests_total")
    assert requests == {
        labels(endpoint=e, status="200", cache=c): 0.0
        for e in ("/infer", "/infer/batch", "/v2/infer")
        for c in ("hit", "miss")
    }
    counts = named(series, "falcon_request_duration_seconds_count")
    assert counts == {labels(endpoint=e): 0.0 for e in ("/infer", "/infer/batch", "/v2/infer")}
    assert not [name for name, _ in series if name.endswith("_created")]
    assert named(series, "falcon_memory_limit_bytes") == {labels(): 512.0}
    assert named(series, "falcon_build_info") == {labels(version=__version__): 1.0}
    assert named(series, "falcon_inflight_requests") == {labels(): 0.0}
    assert named(series, "falcon_model_info") == {}  # no model bound yet


def test_requests_are_counted_by_endpoint_status_and_cache_with_their_latency(
    metrics: ServingMetrics,
) -> None:
    metrics.observe_request("/infer", 200, "miss", 0.004)
    metrics.observe_request("/infer", 200, "miss", 0.005)  # on a bucket edge: le is inclusive
    metrics.observe_request("/infer", 200, "hit", 0.0005)
    metrics.observe_request("/infer", 503, "none", 0.02)  # a status never seen before
    metrics.observe_request("/healthz", 200, "none", 0.3)  # an endpoint never seen before
    series = exposition(metrics)
    requests = named(series, "falcon_requests_total")
    assert requests[labels(endpoint="/infer", status="200", cache="miss")] == 2.0
    assert requests[labels(endpoint="/infer", status="200", cache="hit")] == 1.0
    assert requests[labels(endpoint="/infer", status="503", cache="none")] == 1.0
    assert requests[labels(endpoint="/healthz", status="200", cache="none")] == 1.0
    buckets = named(series, "falcon_request_duration_seconds_bucket")

    def bucket(endpoint: str, le: str) -> float:
        return buckets[labels(endpoint=endpoint, le=le)]

    # /infer: 0.0005, 0.004, 0.005, 0.02
    assert [bucket("/infer", le) for le in ("0.001", "0.0025", "0.005", "0.01", "0.025")] == [
        1.0, 1.0, 3.0, 3.0, 4.0,
    ]  # fmt: skip
    assert bucket("/infer", "+Inf") == 4.0
    assert bucket("/healthz", "0.25") == 0.0
    assert bucket("/healthz", "0.5") == 1.0
    sums = named(series, "falcon_request_duration_seconds_sum")
    assert sums[labels(endpoint="/infer")] == pytest.approx(0.0295)


def test_request_series_are_what_prometheus_clients_own_counter_and_histogram_expose(
    metrics: ServingMetrics,
) -> None:
    """The hot path keeps plain numbers; the exposition must be exactly what a locked
    ``Counter`` and ``Histogram`` would give for the same requests: series, order, values."""
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

    reference = CollectorRegistry()
    base = ["worker", "release"]
    counter = Counter("falcon_requests_total", "Requests by endpoint, HTTP status and cache.",
                      [*base, "endpoint", "status", "cache"], registry=reference)  # fmt: skip
    histogram = Histogram("falcon_request_duration_seconds", "Request latency (seconds).",
                          [*base, "endpoint"], registry=reference,
                          buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                   1.0, 2.5, 5.0, 10.0))  # fmt: skip
    for endpoint in ("/infer", "/infer/batch", "/v2/infer"):  # created up front, as the worker
        histogram.labels("w7", "r3", endpoint)
        for cache in ("hit", "miss"):
            counter.labels("w7", "r3", endpoint, "200", cache)
    observed = [("/infer", 200, "hit", 0.0004), ("/v2/infer", 200, "miss", 0.0025),
                ("/infer", 429, "none", 10.0), ("/healthz", 200, "none", 0.1 + 0.2),
                ("/infer", 200, "hit", 11.5), ("/infer/batch", 200, "miss", 0.05)]  # fmt: skip
    for endpoint, status, cache, seconds in observed:
        metrics.observe_request(endpoint, status, cache, seconds)
        counter.labels("w7", "r3", endpoint, str(status), cache).inc()
        histogram.labels("w7", "r3", endpoint).observe(seconds)

    def lines(text: bytes, prefixes: tuple[str, ...]) -> list[str]:
        return [line for line in text.decode().splitlines() if line.startswith(prefixes)]

    ours, _ = metrics.render()
    wanted = ("falcon_requests_total", "falcon_request_duration_seconds")
    assert lines(ours, wanted) == lines(generate_latest(reference), wanted)
    assert (
        len(lines(ours, wanted)) == 8 + 4 * 16
    )  # 8 counters; 4 histograms: 14 buckets, count, sum


def test_errors_degraded_responses_and_counters_bound_up_front(metrics: ServingMetrics) -> None:
    metrics.observe_error("model_overloaded")
    metrics.observe_error("model_overloaded")
    metrics.observe_error("invalid_input")
    metrics.observe_degraded(["redis", "postgresql"])
    metrics.observe_degraded(["redis"])
    metrics.observe_degraded([])
    metrics.cache_hits.inc(3)
    metrics.cache_misses.inc(5)
    metrics.idempotency_hits.inc()
    metrics.batch_size.observe(3)
    series = exposition(metrics)
    assert named(series, "falcon_errors_total") == {
        labels(type="model_overloaded"): 2.0,
        labels(type="invalid_input"): 1.0,
    }
    assert named(series, "falcon_degraded_responses_total") == {
        labels(dependency="redis"): 2.0,
        labels(dependency="postgresql"): 1.0,
    }
    assert named(series, "falcon_cache_hits_total") == {labels(): 3.0}
    assert named(series, "falcon_cache_misses_total") == {labels(): 5.0}
    assert named(series, "falcon_idempotency_hits_total") == {labels(): 1.0}
    batch = named(series, "falcon_batch_size_bucket")
    assert (batch[labels(le="2.0")], batch[labels(le="4.0")]) == (0.0, 1.0)


def test_values_read_at_scrape_time(metrics: ServingMetrics) -> None:
    """Queue depth and in-flight requests are read when scraped, not pushed per request."""
    depth = [0]
    metrics.bind_queue(lambda: depth[0])
    depth[0] = 17
    metrics.inflight_requests = 4
    series = exposition(metrics)
    assert named(series, "falcon_queue_depth") == {labels(): 17.0}
    assert named(series, "falcon_inflight_requests") == {labels(): 4.0}
    depth[0] = 0
    metrics.inflight_requests = 0
    series = exposition(metrics)
    assert named(series, "falcon_queue_depth") == {labels(): 0.0}
    assert named(series, "falcon_inflight_requests") == {labels(): 0.0}


def test_a_rebound_model_replaces_the_old_model_series(metrics: ServingMetrics) -> None:
    metrics.bind_model("sentiment", "1", "aa")
    metrics.bind_model("sentiment", "2", "bb")
    metrics.set_memory_limit(0)  # limits off
    series = exposition(metrics)
    assert named(series, "falcon_model_info") == {
        labels(name="sentiment", version="2", sha256="bb"): 1.0
    }
    assert named(series, "falcon_memory_limit_bytes") == {labels(): 0.0}


def test_store_numbers(metrics: ServingMetrics) -> None:
    stats = StoreStats(
        rows_written=120,
        rows_pending=3,
        rows_spilled=7,
        rows_lost=0,
        disk_bytes=4096,
        disk_budget_bytes=1_048_576,
        breaker_states={"redis": 1, "postgresql": 0},
        breaker_transitions={("redis", "open"): 2, ("redis", "half_open"): 1},
    )
    metrics.bind_stores(lambda: stats)
    series = exposition(metrics)
    assert named(series, "falcon_request_log_rows_written_total") == {labels(): 120.0}
    assert named(series, "falcon_request_log_rows_pending") == {labels(): 3.0}
    assert named(series, "falcon_request_log_rows_spilled_total") == {labels(): 7.0}
    assert named(series, "falcon_request_log_rows_lost_total") == {labels(): 0.0}
    assert named(series, "falcon_request_log_disk_bytes") == {labels(): 4096.0}
    assert named(series, "falcon_request_log_disk_budget_bytes") == {labels(): 1_048_576.0}
    assert named(series, "falcon_circuit_breaker_state") == {
        labels(dependency="redis"): 1.0,
        labels(dependency="postgresql"): 0.0,
    }
    assert named(series, "falcon_circuit_breaker_transitions_total") == {
        labels(dependency="redis", to_state="open"): 2.0,
        labels(dependency="redis", to_state="half_open"): 1.0,
    }
    # No Redis configured: no Redis series at all (not a misleading 0).
    assert named(series, "falcon_redis_round_trips_total") == {}
    assert named(series, "falcon_redis_calls_total") == {}


def test_redis_round_trips_when_redis_is_used(metrics: ServingMetrics) -> None:
    metrics.bind_stores(lambda: StoreStats(redis_round_trips=10, redis_calls=None))
    series = exposition(metrics)
    assert named(series, "falcon_redis_round_trips_total") == {labels(): 10.0}
    assert named(series, "falcon_redis_calls_total") == {labels(): 0.0}


def test_active_faults_and_connections(metrics: ServingMetrics) -> None:
    active = {"latency": 0.2, "errors": 0.5}
    closed = {"evicted": 2, "idle_timeout": 9}
    metrics.bind_faults(lambda: active)
    metrics.bind_connections(lambda: 12, closed)
    series = exposition(metrics)
    assert named(series, "falcon_faults_active") == {
        labels(fault="latency", profile="staging"): 1.0,
        labels(fault="errors", profile="staging"): 1.0,
    }
    assert named(series, "falcon_connections_open") == {labels(): 12.0}
    assert named(series, "falcon_connections_closed_total") == {
        labels(reason="evicted"): 2.0,
        labels(reason="idle_timeout"): 9.0,
    }
    active.clear()
    closed["evicted"] = 3
    series = exposition(metrics)
    assert named(series, "falcon_faults_active") == {}
    assert named(series, "falcon_connections_closed_total")[labels(reason="evicted")] == 3.0


def test_two_workers_in_one_process_do_not_share_counts() -> None:
    a = ServingMetrics(worker="w1", release="r1")
    b = ServingMetrics(worker="w2", release="r1")
    a.observe_error("x")
    assert named(exposition(b), "falcon_errors_total") == {}


def test_resident_bytes_agrees_with_the_kernels_vmrss() -> None:
    """Compared with /proc/self/status (another file, in kB), within 5 % for allocation noise."""
    with open("/proc/self/status") as handle:
        vmrss_kb = next(int(line.split()[1]) for line in handle if line.startswith("VmRSS:"))
    ours = resident_bytes()
    assert ours == pytest.approx(vmrss_kb * 1024, rel=0.05)
    assert ours % os.sysconf("SC_PAGE_SIZE") == 0
