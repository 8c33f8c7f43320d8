"""FalconCanaryAborted: an aborted rollout pages at once and holds for alerts.canary_aborted_window.

The expected times are hand arithmetic over the samples (Prometheus 2.x ranges are closed
``[t - window, t]``): the alert fires at the first evaluation that sees the counter's 1 next to
an earlier 0, and resolves at the first evaluation whose window no longer holds the last 0.
"""

from __future__ import annotations

from falcon_platform.config.spec import AlertSpec, Spec
from falcon_platform.observability import names
from falcon_platform.observability.alert_defs import (
    CANARY_ABORTED,
    CounterIncrease,
    alert_defs,
    runbook_url,
)
from falcon_platform.observability.evaluator import AlertEvaluator
from falcon_platform.testing import FakeSLISource

R2 = {"release": "r2", "reason": "analysis"}


def _counter(
    source: FakeSLISource, labels: dict[str, str], values: list[tuple[float, float]]
) -> None:
    for ts, value in values:
        source.add(names.ROLLOUTS_ABORTED, labels, ts, value)


def _every(step: float, start: float, end: float, value: float) -> list[tuple[float, float]]:
    out, t = [], start
    while t <= end:
        out.append((t, value))
        t += step
    return out


def _run(evaluator: AlertEvaluator, source: FakeSLISource, until: float) -> dict[str, list[float]]:
    """Evaluate every 5 s from 0 to ``until``; the times of each firing and resolution."""
    times: dict[str, list[float]] = {"firing": [], "resolved": []}
    t = 0.0
    while t <= until:
        for transition in evaluator.evaluate(source, t):
            assert transition.name == CANARY_ABORTED
            times[transition.state].append(t)
        t += 5
    return times


def test_the_definition_pages_at_once_on_any_abort_with_release_and_reason() -> None:
    (definition,) = [d for d in alert_defs(Spec()) if d.name == CANARY_ABORTED]
    assert definition.severity == "critical"
    assert definition.for_s == 0
    assert definition.condition == CounterIncrease(
        names.ROLLOUTS_ABORTED, 900.0, by=("release", "reason"), threshold=0.0
    )
    assert definition.condition.promql() == (
        "sum by (release, reason) (increase(falcon_rollouts_aborted_total[15m])) > 0"
    )
    annotations = definition.annotations()
    assert "{{ $labels.release }}" in annotations["summary"]
    assert "falcon releases show {{ $labels.release }}" in annotations["description"]
    assert annotations["runbook_url"] == runbook_url("FalconCanaryAborted")
    assert annotations["runbook_url"].endswith("#falconcanaryaborted")


def test_fires_at_the_first_evaluation_after_the_abort_and_resolves_after_the_window() -> None:
    """Samples every 15 s: 0 up to 105 s (the rollout runs), 1 from 120 s (aborted at ~110 s).
    Fires at 120 s; the last 0 (105 s) leaves the 900 s window after 1005 s: resolved at 1010 s."""
    source = FakeSLISource()
    _counter(source, R2, _every(15, 0, 105, 0) + _every(15, 120, 1500, 1))
    evaluator = AlertEvaluator(Spec())
    times = _run(evaluator, source, 1500)
    assert times == {"firing": [120.0], "resolved": [1010.0]}


def test_the_firing_alert_names_the_release_and_the_reason() -> None:
    source = FakeSLISource()
    _counter(source, R2, [(0, 0), (10, 1)])
    _counter(source, {"release": "r2", "reason": "manual"}, [(0, 0), (10, 0)])
    evaluator = AlertEvaluator(Spec())
    (fired,) = evaluator.evaluate(source, 10)
    assert fired.state == "firing"
    assert fired.labels == {
        "alertname": "FalconCanaryAborted",
        "release": "r2",
        "reason": "analysis",
        "severity": "critical",
        "service": "falcon",
    }
    assert fired.annotations["summary"] == (
        "Rollout of release r2 aborted (analysis); the stable release serves"
    )
    assert "falcon releases show r2" in fired.annotations["description"]
    assert [a.name for a in evaluator.firing()] == ["FalconCanaryAborted"]


def test_the_spec_window_decides_how_long_it_holds() -> None:
    """canary_aborted_window 5 m: the 0 at 105 s leaves the window after 405 s: resolved at 410 s."""
    source = FakeSLISource()
    _counter(source, R2, _every(15, 0, 105, 0) + _every(15, 120, 900, 1))
    spec = Spec(alerts=AlertSpec(canary_aborted_window=300))
    assert _run(AlertEvaluator(spec), source, 900) == {"firing": [120.0], "resolved": [410.0]}


def test_a_promoted_rollout_and_a_counter_never_exported_at_zero_do_not_fire() -> None:
    """Counters at 0 (promoted) never fire. A series whose first sample is already 1 has no
    increase either, in Prometheus as here: why the supervisor exports every reason at 0 when
    a rollout starts."""
    source = FakeSLISource()
    _counter(source, {"release": "r3", "reason": "analysis"}, _every(15, 0, 600, 0))
    _counter(source, {"release": "r4", "reason": "manual"}, _every(15, 300, 600, 1))
    assert _run(AlertEvaluator(Spec()), source, 600) == {"firing": [], "resolved": []}
