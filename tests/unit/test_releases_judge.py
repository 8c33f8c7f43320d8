"""The canary judge and the load gate's judgement (pure): golden cases from issue 14.

Expected verdicts come from arithmetic written here, not from the code under test: e.g. the
seed's leak (5 MB per request) at 20 req/s is 100 MB/s = 6,000 MB/min, so a worker at 200 MB
with a 512 MB limit reaches it in 312 / 100 = 3.1 s.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from falcon_platform.config.spec import CanarySpec, GateSpec
from falcon_platform.errors import ModelError
from falcon_platform.releases.gate import (
    LoadGateNumbers,
    ModelFacts,
    judge_load_gate,
    judge_model_gate,
    model_facts,
)
from falcon_platform.releases.judge import (
    CanaryLimits,
    Verdict,
    WindowStats,
    chi2_sf,
    chi_square_p,
    judge_canary,
    one_sided_z,
    population_stability_index,
)
from falcon_platform.releases.rollout import PHASES, Phase, canary_workers
from falcon_platform.releases.window import counter_increase, histogram_quantile

LIMITS = CanaryLimits.from_spec(CanarySpec(), memory_limit_mb=512)
LABELS = {"negative": 400, "neutral": 150, "positive": 450}
HEALTHY = WindowStats(requests=1000, errors=1, p95_ms=20.0, memory_mb=110.0,
                      memory_slope_mb_per_min=0.5, labels=LABELS,
                      mean_confidence=0.71)  # fmt: skip


def _canary(**kw: object) -> WindowStats:
    values = {**HEALTHY.__dict__, **kw}
    return WindowStats(**values)  # type: ignore[arg-type]


def _failed_checks(analysis: object) -> list[str]:
    return [c["check"] for c in analysis.checks if c["passed"] is False]  # type: ignore[attr-defined]


def test_a_healthy_canary_passes() -> None:
    analysis = judge_canary(_canary(errors=2), HEALTHY, LIMITS, step_left_s=60)
    assert analysis.verdict is Verdict.PASS
    assert _failed_checks(analysis) == []


def test_twelve_percent_errors_fail_at_once_above_the_seed_threshold() -> None:
    analysis = judge_canary(_canary(requests=50, errors=6), HEALTHY, LIMITS, step_left_s=60)
    assert analysis.verdict is Verdict.FAIL
    assert "error_ratio" in _failed_checks(analysis)
    assert "12.0%" in analysis.reasons[0]  # 6/50


def test_errors_worse_than_stable_fail_only_when_significant() -> None:
    worse = judge_canary(_canary(errors=40), HEALTHY, LIMITS, step_left_s=60)  # 4% vs 0.1%
    assert "error_ratio_vs_stable" in _failed_checks(worse)
    noise = judge_canary(_canary(errors=5), HEALTHY, LIMITS, step_left_s=60)  # 0.5% vs 0.1%
    assert noise.verdict is Verdict.PASS
    assert one_sided_z(40, 1000, 1, 1000, 0.01) > 2.326
    assert one_sided_z(5, 1000, 1, 1000, 0.01) < 0


def test_a_slow_canary_fails_the_latency_ratio_above_the_floor() -> None:
    slow = judge_canary(_canary(p95_ms=400.0), _canary(p95_ms=200.0), LIMITS, step_left_s=60)
    assert _failed_checks(slow) == ["p95_ratio"]  # 2x > 1.5x
    fast = judge_canary(_canary(p95_ms=9.0), _canary(p95_ms=3.0), LIMITS, step_left_s=60)
    assert fast.verdict is Verdict.PASS  # 3x, but 9 ms is under the 100 ms floor


def test_the_seed_leak_at_twenty_requests_a_second_fails_before_the_limit() -> None:
    leak = _canary(requests=60, memory_mb=200.0, memory_slope_mb_per_min=5 * 20 * 60)
    analysis = judge_canary(leak, HEALTHY, LIMITS, step_left_s=60)
    assert analysis.verdict is Verdict.FAIL
    [check] = [c for c in analysis.checks if c["check"] == "seconds_to_memory_limit"]
    assert check["value"] == pytest.approx((512 - 200) / 100, abs=0.05)  # 3.1 s
    warming_up = _canary(memory_mb=112.0, memory_slope_mb_per_min=300)  # 2 MB above stable
    assert judge_canary(warming_up, HEALTHY, LIMITS, step_left_s=60).verdict is Verdict.PASS
    slow_growth = _canary(memory_mb=200.0, memory_slope_mb_per_min=20)  # limit in 15.6 min
    assert judge_canary(slow_growth, HEALTHY, LIMITS, step_left_s=60).verdict is Verdict.PASS
    assert judge_canary(slow_growth, HEALTHY, LIMITS, step_left_s=1200).failed  # step outlasts it
    over = judge_canary(_canary(memory_mb=450.0), HEALTHY, LIMITS, step_left_s=60)
    assert _failed_checks(over) == ["memory_percent"]  # 88% > 80%


def test_any_oom_kill_or_limit_recycle_fails_even_without_traffic() -> None:
    oom = judge_canary(WindowStats(oom_kills=1), HEALTHY, LIMITS, step_left_s=60)
    assert oom.verdict is Verdict.FAIL
    recycled = judge_canary(WindowStats(limit_recycles=1), HEALTHY, LIMITS, step_left_s=60)
    assert _failed_checks(recycled) == ["limit_recycles"]


def test_a_model_answering_one_label_for_everything_fails() -> None:
    broken = _canary(labels={"positive": 1000}, mean_confidence=0.99)
    analysis = judge_canary(broken, HEALTHY, LIMITS, step_left_s=60)
    assert _failed_checks(analysis) == ["label_psi"]
    collapsed = _canary(mean_confidence=0.34)  # three classes, confidences near 1/3
    assert _failed_checks(judge_canary(collapsed, HEALTHY, LIMITS, step_left_s=60)) == [
        "confidence_drop"
    ]


def test_chi_square_tail_matches_the_textbook_critical_values() -> None:
    # 5% critical values for 1..4 degrees of freedom (any statistics table)
    for x, df in ((3.841, 1), (5.991, 2), (7.815, 3), (9.488, 4)):
        assert chi2_sf(x, df) == pytest.approx(0.05, abs=1e-3)
    assert chi2_sf(0.0, 3) == 1.0


def test_a_small_sample_label_difference_is_not_a_shift() -> None:
    # from a real run: the same model, 36 vs 29 answers
    stable, canary = {"negative": 12, "positive": 17}, {"negative": 9, "neutral": 3, "positive": 22}
    assert chi_square_p(stable, canary) > 0.01
    limits = CanaryLimits.from_spec(CanarySpec(min_requests=20), memory_limit_mb=512)
    analysis = judge_canary(_canary(requests=36, labels=canary), _canary(requests=40, labels=stable),
                            limits, step_left_s=60)  # fmt: skip
    assert analysis.verdict is Verdict.PASS
    assert population_stability_index({"a": 10}, {}) is None


def test_too_little_traffic_is_inconclusive_and_says_so() -> None:
    analysis = judge_canary(_canary(requests=30, errors=0, labels={}), HEALTHY, LIMITS,
                            step_left_s=60)  # fmt: skip
    assert analysis.verdict is Verdict.INCONCLUSIVE
    assert "too little canary traffic" in analysis.reasons[0]
    assert "30 requests < 100" in analysis.reasons[0]


def test_no_data_or_nan_is_never_a_pass() -> None:
    empty = judge_canary(WindowStats(), WindowStats(), LIMITS, step_left_s=60)
    assert empty.verdict is Verdict.INCONCLUSIVE
    nan = WindowStats(requests=0, p95_ms=math.nan, memory_mb=math.nan,
                      memory_slope_mb_per_min=math.nan)  # fmt: skip
    assert judge_canary(nan, nan, LIMITS, step_left_s=60).verdict is Verdict.INCONCLUSIVE
    assert WindowStats().error_ratio is None


def test_the_load_gate_refuses_the_seed_leak_with_its_slope() -> None:
    gate = GateSpec()
    leak = LoadGateNumbers(requests=60, errors=0, p99_ms=30.0, rss_start_mb=100.0,
                           rss_peak_mb=512.0, slope_mb_per_min=6000.0, reached_limit=True,
                           duration_s=4.1)  # fmt: skip
    result = judge_load_gate(leak, gate, limit_mb=512)
    assert not result.passed
    assert any("6000 MB/min" in f for f in result.failures)
    assert "rss_growth_mb" in [c["check"] for c in result.checks if not c["passed"]]


def test_the_load_gate_passes_a_flat_release_and_refuses_a_slow_leak_within_the_horizon() -> None:
    gate = GateSpec()
    flat = LoadGateNumbers(400, 0, 25.0, 100.0, 104.0, 0.5, False, 20.0)
    assert judge_load_gate(flat, gate, limit_mb=512).passed  # 816 min to the limit
    warm_up = LoadGateNumbers(60, 0, 25.0, 107.0, 107.5, 7.6, False, 3.8)  # 51 min, 0.5 MB
    assert judge_load_gate(warm_up, gate, limit_mb=500).passed  # too little growth to project
    slow = LoadGateNumbers(400, 0, 25.0, 100.0, 110.0, 30.0, False, 20.0)  # 13 min < 60
    result = judge_load_gate(slow, gate, limit_mb=512)
    assert [c["check"] for c in result.checks if not c["passed"]] == ["time_to_memory_limit"]
    errors = LoadGateNumbers(400, 80, 25.0, 100.0, 101.0, 0.0, False, 20.0)
    assert not judge_load_gate(errors, gate, limit_mb=512).passed  # 20% > 1%
    boot = LoadGateNumbers(0, 0, None, None, None, None, False, 0.0, boot_error="exit 3")
    assert judge_load_gate(boot, gate, limit_mb=512).failures == [
        "the release's worker did not become ready: exit 3"
    ]


def test_canary_worker_counts_round_up_and_stay_within_the_pool() -> None:
    assert [canary_workers(3, w) for w in (0, 10, 34, 50, 67, 100)] == [0, 1, 2, 2, 3, 3]
    assert canary_workers(10, 25) == 3
    assert canary_workers(1, 10) == 1


def test_rollout_phases_end_in_promoted_aborted_or_refused() -> None:
    assert Phase.PROMOTED in PHASES[Phase.PROMOTING]
    assert PHASES[Phase.ABORTED] == frozenset()
    assert Phase.PROMOTED not in PHASES[Phase.GATE]  # never promoted without a canary


def test_counter_increase_counts_restarts_and_new_series() -> None:
    assert counter_increase([(0, 100), (1, 110), (2, 130)], start=0.5) == 30
    assert counter_increase([(1, 5), (2, 9)], start=0.5) == 9  # began inside: from 0
    assert counter_increase([(0, 100), (1, 120), (2, 3)], start=0) == 23  # reset at t=2


def test_histogram_quantile_interpolates_like_prometheus() -> None:
    buckets = {0.01: 50.0, 0.05: 90.0, 0.1: 100.0, math.inf: 100.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.01)
    assert histogram_quantile(0.95, buckets) == pytest.approx(0.05 + 0.05 * 0.5)
    assert histogram_quantile(0.95, {}) is None


def test_the_model_gate_refuses_changed_labels_and_a_worse_held_out_score() -> None:
    gate = GateSpec()
    stable = ModelFacts("a" * 64, ("negative", "neutral", "positive"), 0.83)
    assert judge_model_gate(None, stable, gate)[0]["passed"]
    same = judge_model_gate(stable, stable, gate)
    assert [c["detail"] for c in same] == ["same model as stable (sha256 aaaaaaaaaaaa)"]
    better = ModelFacts("b" * 64, stable.labels, 0.815)  # drop 0.015 <= 0.02
    assert all(c["passed"] for c in judge_model_gate(stable, better, gate))
    worse = ModelFacts("b" * 64, stable.labels, 0.78)  # drop 0.05 > 0.02
    [labels, score] = judge_model_gate(stable, worse, gate)
    assert labels["passed"]
    assert not score["passed"]
    assert "0.780 vs stable's 0.830" in score["detail"]
    relabelled = ModelFacts("c" * 64, ("negative", "positive"), 0.9)
    [labels, _] = judge_model_gate(stable, relabelled, gate)
    assert not labels["passed"]
    assert "removed ['neutral']" in labels["detail"]
    allowed = GateSpec(allow_label_change=True)
    assert judge_model_gate(stable, relabelled, allowed)[0]["passed"]


def test_model_facts_come_from_the_trained_metadata(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"metadata\.json missing"):
        model_facts(tmp_path)
