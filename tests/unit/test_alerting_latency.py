"""FalconHighLatency: the latency objective ("95% of requests within 500 ms") missed for a minute.

Expected values are hand arithmetic over the bucket counters (5 s apart, so a 300 s window
holds 61 samples and, ending and starting on samples, rate() needs no extrapolation).
"""

from __future__ import annotations

from falcon_platform.config.spec import AlertSpec, SLOSpec, Spec
from falcon_platform.observability import names
from falcon_platform.observability.alert_defs import alert_defs
from falcon_platform.observability.conditions import LatencyRatio, bucket_label
from falcon_platform.observability.evaluator import AlertEvaluator
from falcon_platform.testing import FakeSLISource

BUCKET = f"{names.REQUEST_DURATION}_bucket"
W1 = {"worker": "w1", "release": "r1"}


def _traffic(
    source: FakeSLISource, *, until: float, rps: float, fast_share: float, le: str = "0.5"
) -> None:
    """Cumulative bucket counters every 5 s: ``rps`` requests, ``fast_share`` within the bound."""
    t = 0.0
    while t <= until:
        source.add(BUCKET, {**W1, "le": "+Inf"}, t, rps * t)
        source.add(BUCKET, {**W1, "le": le}, t, rps * fast_share * t)
        source.add(BUCKET, {**W1, "le": "0.25"}, t, 0.0)  # another bucket: ignored
        t += 5


def _firing(evaluator: AlertEvaluator, source: FakeSLISource, until: float) -> list[float]:
    times, t = [], 0.0
    while t <= until:
        times += [t for x in evaluator.evaluate(source, t) if x.state == "firing"]
        t += 5
    return times


def test_the_rule_counts_buckets_within_the_objective_against_every_request() -> None:
    (definition,) = [d for d in alert_defs(Spec()) if d.name == "FalconHighLatency"]
    assert (definition.severity, definition.for_s, definition.group) == (
        "warning",
        60.0,
        "falcon-slo",
    )
    assert definition.labels("falcon")["slo"] == "latency"
    assert definition.condition == LatencyRatio(0.5, 300.0, 0.95, 0.1)
    assert definition.condition.promql() == (
        'sum(rate(falcon_request_duration_seconds_bucket{le="0.5"}[5m]))\n'
        '/ sum(rate(falcon_request_duration_seconds_bucket{le="+Inf"}[5m]))\n'
        "< 0.95\n"
        'and sum(rate(falcon_request_duration_seconds_bucket{le="+Inf"}[5m])) >= 0.1'
    )


def test_a_slow_release_fires_after_latency_for_and_a_fast_one_never() -> None:
    """80% slow from the start: the ratio is 0.2 < 0.95 as soon as there are two samples
    (5 s), pending from there, firing 60 s later (65 s). 97% fast: never."""
    slow = FakeSLISource()
    _traffic(slow, until=300, rps=10, fast_share=0.2)
    assert _firing(AlertEvaluator(Spec()), slow, 300) == [65.0]
    fast = FakeSLISource()
    _traffic(fast, until=300, rps=10, fast_share=0.97)
    assert _firing(AlertEvaluator(Spec()), fast, 300) == []


def test_too_little_traffic_is_no_verdict() -> None:
    """0.05 req/s, all slow, is under alerts.low_traffic_min_rps (0.1): quiet; without the
    guard it fires."""
    source = FakeSLISource()
    _traffic(source, until=300, rps=0.05, fast_share=0.0)
    assert _firing(AlertEvaluator(Spec()), source, 300) == []
    unguarded = Spec(alerts=AlertSpec(low_traffic_min_rps=0))
    assert _firing(AlertEvaluator(unguarded), source, 300) == [65.0]


def test_the_objective_comes_from_the_spec_and_matches_the_exported_label() -> None:
    """A 1 s objective reads the bucket workers export as le="1.0" (not "1": Prometheus 2.x
    compares the label as text), in the rule and in the evaluator."""
    spec = Spec(slo=SLOSpec(latency_p95_ms=1000), alerts=AlertSpec(latency_for=0))
    (definition,) = [d for d in alert_defs(spec) if d.name == "FalconHighLatency"]
    assert 'le="1.0"' in definition.condition.promql()
    assert definition.summary == "p95 latency above 1000 ms"
    source = FakeSLISource()
    _traffic(source, until=60, rps=10, fast_share=0.5, le="1.0")
    assert _firing(AlertEvaluator(spec), source, 60) == [5.0]


def test_bucket_labels_are_written_as_workers_export_them() -> None:
    assert [bucket_label(b) for b in (0.5, 1.0, 2.5, 10.0, float("inf"))] == [
        "0.5",
        "1.0",
        "2.5",
        "10.0",
        "+Inf",
    ]
