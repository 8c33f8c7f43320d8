"""The local alert evaluator: Prometheus's pending/firing/resolved semantics over an SLI source."""

import json

from falcon_platform.config.spec import AlertSpec, Spec
from falcon_platform.observability import names
from falcon_platform.observability.evaluator import AlertEvaluator
from falcon_platform.testing import FakeSLISource

GB = 1_000_000_000
W1 = {"worker": "w1", "release": "r1"}


def _memory(
    source: FakeSLISource,
    labels: dict[str, str],
    start: float,
    end: float,
    rss: float,
    limit: float = GB,
) -> None:
    t = start
    while t <= end:
        source.add(names.WORKER_RSS, labels, t, rss)
        source.add(names.MEMORY_LIMIT, labels, t, limit)
        t += 5


def _names(alerts: list) -> list[str]:  # type: ignore[type-arg]
    return [a.name for a in alerts]


def test_for_duration_keeps_an_alert_pending_then_fires_it() -> None:
    """Memory above 80% for 1 m: pending at first, one firing transition at +60 s, not before."""
    source = FakeSLISource()
    _memory(source, W1, 0, 120, 0.9 * GB)
    evaluator = AlertEvaluator(Spec())
    assert evaluator.evaluate(source, 0) == []
    assert [(a.name, a.state) for a in evaluator.active()] == [
        ("FalconWorkerMemoryHigh", "pending")
    ]
    assert evaluator.evaluate(source, 55) == []
    (fired,) = evaluator.evaluate(source, 60)
    assert (fired.name, fired.state, fired.severity, fired.active_since, fired.ts) == (
        "FalconWorkerMemoryHigh",
        "firing",
        "warning",
        0,
        60,
    )
    assert fired.labels == {
        "alertname": "FalconWorkerMemoryHigh",
        "worker": "w1",
        "release": "r1",
        "severity": "warning",
        "service": "falcon",
    }
    assert fired.value == 0.9
    assert fired.annotations["summary"] == "Worker w1 uses more than 80% of its memory limit"
    assert fired.annotations["runbook_url"].endswith("RUNBOOK.md#falconworkermemoryhigh")
    assert evaluator.evaluate(source, 65) == []  # still firing: no second transition
    assert _names(evaluator.firing()) == ["FalconWorkerMemoryHigh"]


def test_clearing_resolves_a_firing_alert_and_silently_drops_a_pending_one() -> None:
    source = FakeSLISource()
    _memory(source, W1, 0, 60, 0.9 * GB)
    w2 = {"worker": "w2", "release": "r1"}
    _memory(source, w2, 30, 60, 0.9 * GB)
    _memory(source, W1, 65, 100, 0.1 * GB)
    _memory(source, w2, 65, 100, 0.1 * GB)
    evaluator = AlertEvaluator(Spec())
    for t in (0, 30, 60):
        evaluator.evaluate(source, t)
    assert [a.labels["worker"] for a in evaluator.firing()] == ["w1"]
    assert [a.state for a in evaluator.active()] == ["firing", "pending"]
    (resolved,) = evaluator.evaluate(source, 65)
    assert (resolved.state, resolved.labels["worker"], resolved.ts) == ("resolved", "w1", 65)
    assert evaluator.active() == []


def test_alerts_without_for_fire_on_the_first_evaluation() -> None:
    source = FakeSLISource()
    source.add(names.CRASH_LOOP, {"release": "r2"}, 0, 1)
    (fired,) = AlertEvaluator(Spec()).evaluate(source, 1)
    assert (fired.name, fired.severity, fired.labels["release"]) == (
        "FalconCrashLoop",
        "critical",
        "r2",
    )
    assert fired.annotations["summary"] == "Release r2 is crash-looping"


def test_faults_alert_only_under_prod_profile_label_or_evaluator_profile() -> None:
    """Series without a profile label take the supervisor's profile; a labelled one keeps its own."""
    source = FakeSLISource()
    source.add(names.FAULTS_ACTIVE, {"fault": "error_ratio", **W1}, 0, 1)
    source.add(names.FAULTS_ACTIVE, {"fault": "latency_ms", "profile": "staging", **W1}, 0, 1)
    prod = AlertEvaluator(Spec(), profile="prod")
    staging = AlertEvaluator(Spec(), profile="staging")
    assert [t.labels["fault"] for t in prod.evaluate(source, 1)] == ["error_ratio"]
    assert staging.evaluate(source, 1) == []


def test_a_worker_without_memory_limit_never_alerts_on_memory() -> None:
    source = FakeSLISource()
    _memory(source, W1, 0, 300, 5 * GB, limit=0)
    evaluator = AlertEvaluator(Spec())
    for t in range(0, 301, 15):
        evaluator.evaluate(source, t)
    assert evaluator.active() == []


def test_a_series_that_stops_stops_alerting_after_the_lookback() -> None:
    """The SLI store writes no staleness markers: a worker gone for `lookback` is forgotten."""
    source = FakeSLISource()
    _memory(source, W1, 0, 100, 0.95 * GB)
    evaluator = AlertEvaluator(Spec(), lookback=30)
    for t in range(0, 101, 10):
        evaluator.evaluate(source, t)
    assert _names(evaluator.firing()) == ["FalconWorkerMemoryHigh"]
    assert evaluator.evaluate(source, 125) == []
    assert [t.state for t in evaluator.evaluate(source, 135)] == ["resolved"]


def test_thresholds_and_for_durations_come_from_the_spec() -> None:
    source = FakeSLISource()
    _memory(source, W1, 0, 60, 0.6 * GB)
    spec = Spec(alerts=AlertSpec(memory_percent=50, memory_for=10))
    default = AlertEvaluator(Spec())
    tuned = AlertEvaluator(spec)
    for t in (0, 5, 10):
        default.evaluate(source, t)
        tuned.evaluate(source, t)
    assert default.active() == []
    assert [(a.name, a.state) for a in tuned.active()] == [("FalconWorkerMemoryHigh", "firing")]


def test_no_ready_worker_has_a_startup_grace() -> None:
    source = FakeSLISource()
    for t in range(0, 61, 5):
        source.add(names.WORKERS_READY, {"release": "r1"}, t, 0 if t < 20 else 1)
    source.add(names.WORKERS_READY, {"release": "r1"}, 65, 0)
    source.add(names.WORKERS_READY, {"release": "r1"}, 95, 0)
    evaluator = AlertEvaluator(Spec())
    fired = [t for now in range(0, 96, 5) for t in evaluator.evaluate(source, now)]
    assert [(t.name, t.state, t.ts) for t in fired] == [("FalconNoReadyWorker", "firing", 95)]


def test_transitions_serialise_to_json_for_the_journal() -> None:
    source = FakeSLISource()
    source.add(names.CRASH_LOOP, {"release": "r2"}, 0, 1)
    (fired,) = AlertEvaluator(Spec()).evaluate(source, 1)
    assert json.loads(json.dumps(fired.to_dict()))["labels"]["alertname"] == "FalconCrashLoop"


def test_a_counter_first_seen_at_one_is_invisible_to_increase() -> None:
    """Why the supervisor exports OOM-kill counters at 0 from worker start: like Prometheus,
    increase() cannot count the kill that created the series."""
    labels = {"worker": "w1", "release": "r1"}
    created_by_kill = FakeSLISource()
    exported_at_zero = FakeSLISource()
    for t in range(0, 61, 5):
        created_by_kill.add(names.WORKER_OOM_KILLS, labels, t + 30, 1)
        exported_at_zero.add(names.WORKER_OOM_KILLS, labels, t, 0 if t < 30 else 1)
    assert AlertEvaluator(Spec()).evaluate(created_by_kill, 90) == []
    (fired,) = AlertEvaluator(Spec()).evaluate(exported_at_zero, 60)
    assert fired.name == "FalconWorkerOOMKilled"
