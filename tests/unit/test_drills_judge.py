"""Drill verdicts are pure: hand-written journal rows and answers in, checks and timings out."""

from __future__ import annotations

from typing import Any

import pytest

from falcon_platform.config.settings import Settings
from falcon_platform.drills import CATALOG, DrillOptions, DrillOutcome, drill_named
from falcon_platform.drills import judge as j
from falcon_platform.drills.report import render_markdown
from falcon_platform.drills.runner import applicability, timeline_of
from falcon_platform.drills.session import steady_problem
from falcon_platform.errors import InvalidInputError

T0 = 1_000_000.0


def ev(kind: str, ts: float, worker: str | None = None, **details: Any) -> dict[str, Any]:
    return {"kind": kind, "ts": T0 + ts, "worker": worker, "release": "r1", "details": details}


def answers(*rows: tuple[float, float, int]) -> list[j.Answer]:
    return [(T0 + a, T0 + b, s) for a, b, s in rows]


def by_key(checks: list[j.Check]) -> dict[str, bool]:
    return {c.key: c.met for c in checks}


def test_in_flight_and_failed_count_by_send_time() -> None:
    a = answers((0.0, 0.5, 200), (0.9, 1.2, 0), (1.05, 1.1, 500), (2.0, 2.1, 200))
    assert j.in_flight_at(a, T0 + 1.0) == 1  # sent at 0.9, answered at 1.2
    assert j.failed_in(a, T0 + 0.5) == (2, 3)
    assert j.failed_in(a, T0, T0 + 1.0) == (1, 2)


def test_kill_passes_when_exit_and_replacement_are_in_bounds() -> None:
    events = [
        ev("worker_exited", 0.05, "w1", pid=42, signal="SIGKILL", reason="Signaled", exit_code=137),
        ev("worker_ready", 0.5, "w2", pid=43),  # another worker: not the replacement
        ev("worker_ready", 1.5, "w1", pid=44),
    ]
    a = answers((-0.1, 0.05, 0), (0.2, 0.3, 200))  # one request in flight at the kill, failed
    checks, t = j.judge_kill(
        j.Observation(T0, events, a, T0 + 2), victim_pid=42, victim_worker="w1", restart_bound_s=10
    )
    assert by_key(checks) == {
        "exit noticed": True,
        "replacement ready": True,
        "failed_bounded": True,
    }
    assert t.detection_s == pytest.approx(0.05)
    assert t.mitigation_s == pytest.approx(1.5)
    assert t.measured["in_flight_at_kill"] == 1


def test_kill_fails_without_replacement_or_with_more_failures_than_in_flight() -> None:
    events = [ev("worker_exited", 0.05, "w1", pid=42, reason="Signaled")]
    a = answers((0.2, 0.3, 503), (0.4, 0.5, 503))
    checks, t = j.judge_kill(
        j.Observation(T0, events, a, T0 + 2), victim_pid=42, victim_worker="w1", restart_bound_s=10
    )
    assert by_key(checks) == {
        "exit noticed": True,
        "replacement ready": False,
        "failed_bounded": False,
    }
    assert t.mitigation_s is None


def test_hang_needs_the_liveness_kill_of_that_pid_within_the_bound() -> None:
    events = [
        ev("liveness_kill", 3.0, "w1", pid=7, why="liveness probe failed"),
        ev("worker_ready", 5.0, "w1", pid=8),
    ]
    checks, t = j.judge_hang(
        j.Observation(T0, events, [], T0 + 6), victim_pid=7, victim_worker="w1",
        kill_bound_s=2.5, restart_bound_s=10,
    )  # fmt: skip
    assert by_key(checks)["liveness kill"] is False  # 3.0 s > 2.5 s
    assert by_key(checks)["replacement ready"] is True
    assert t.detection_s == pytest.approx(3.0)


def test_memory_leak_alert_must_come_before_the_first_oom_kill() -> None:
    events = [
        ev("limit_recycle", 5.0, "w1"),
        ev("worker_exited", 8.0, "w2", oom_killed=True, reason="OOMKilled"),
        ev("alert_firing", 9.0, name="FalconWorkerRecycling"),
    ]
    checks, t = j.judge_memory_leak(j.Observation(T0, events, [], T0 + 20), recycle_bound_s=10)
    assert by_key(checks) == {
        "soft-limit recycle": True,
        "no_oom_kill": False,
        "memory_alert": False,
        "users_unaffected": True,  # no request failed
    }
    assert t.mitigation_s == pytest.approx(5.0)
    during_rollback = answers((1.0, 1.1, 200), (15.0, 15.1, 503))
    checks, t = j.judge_memory_leak(
        j.Observation(T0, events, during_rollback, T0 + 20, rollback_at=T0 + 12),
        recycle_bound_s=10,
    )
    assert by_key(checks)["users_unaffected"] is True  # the rollback's failure is reported
    assert t.measured["failed_during_rollback"] == "1 of 1"
    many_failed = answers((1.0, 1.1, 503), (2.0, 2.1, 200))
    checks, _ = j.judge_memory_leak(
        j.Observation(T0, events, many_failed, T0 + 20), recycle_bound_s=10
    )
    assert by_key(checks)["users_unaffected"] is False
    early = [events[0], ev("alert_firing", 6.0, name="FalconWorkerRecycling")]
    checks, t = j.judge_memory_leak(j.Observation(T0, early, [], T0 + 20), recycle_bound_s=10)
    assert all(c.met for c in checks)
    assert t.detection_s == pytest.approx(6.0)


def test_error_spike_needs_real_failures_and_an_error_alert() -> None:
    a = answers(*[(0.1 * i, 0.1 * i + 0.01, 500 if i % 3 == 0 else 200) for i in range(30)])
    events = [ev("alert_firing", 7.0, name="FalconErrorBudgetBurn")]
    checks, t = j.judge_error_spike(
        j.Observation(T0, events, a, T0 + 12), alert_bound_s=10, ratio=0.3
    )
    assert by_key(checks) == {"injected": True, "error alert fired": True}
    assert (t.detection_s, t.mitigation_s) == (pytest.approx(7.0), pytest.approx(12.0))
    ok_only = answers((1.0, 1.1, 200))
    checks, _ = j.judge_error_spike(
        j.Observation(T0, [], ok_only, T0 + 12), alert_bound_s=10, ratio=0.3
    )
    assert by_key(checks) == {"injected": False, "error alert fired": False}


def test_degraded_counts_unplanned_exits_only() -> None:
    events = [
        ev("worker_exited", 1.0, "w1", reason="Stopped"),  # the rolling restart's own retirement
        ev("worker_exited", 2.0, "w2", reason="Recycled"),
    ]
    a = answers((0.0, 0.7, 200), (0.5, 1.2, 200))
    checks, _t = j.judge_degraded(
        j.Observation(T0, events, a, T0 + 3), min_p50_ms=600, max_failed_ratio=0
    )
    assert all(c.met for c in checks), checks
    killed = [*events, ev("worker_exited", 2.5, "w1", reason="LivenessKilled")]
    checks, _ = j.judge_degraded(
        j.Observation(T0, killed, a, T0 + 3), min_p50_ms=None, max_failed_ratio=0
    )
    assert by_key(checks)["no_worker_killed"] is False


def test_slow_model_needs_the_latency_alert_within_its_bound() -> None:
    """600 ms answers and FalconHighLatency 30 s after the first slow worker: met within 42 s,
    not within 20 s; another alert (an error one) does not count."""
    a = answers((0.0, 0.7, 200), (0.5, 1.2, 200))
    fired = [ev("alert_firing", 30.0, name="FalconHighLatency")]
    checks, t = j.judge_degraded(
        j.Observation(T0, fired, a, T0 + 40),
        min_p50_ms=600,
        max_failed_ratio=0,
        latency_alert_bound_s=42,
    )
    assert by_key(checks)["latency alert fired"] is True
    assert (t.detection_s, t.measured["alert"]) == (pytest.approx(30.0), "FalconHighLatency")
    late = j.judge_degraded(
        j.Observation(T0, fired, a, T0 + 40),
        min_p50_ms=600,
        max_failed_ratio=0,
        latency_alert_bound_s=20,
    )[0]
    assert by_key(late)["latency alert fired"] is False
    other = [ev("alert_firing", 5.0, name="FalconHighErrorRate")]
    wrong = j.judge_degraded(
        j.Observation(T0, other, a, T0 + 40),
        min_p50_ms=600,
        max_failed_ratio=0,
        latency_alert_bound_s=42,
    )[0]
    assert by_key(wrong)["latency alert fired"] is False


def status(**sup: Any) -> dict[str, Any]:
    base = {"state": "running", "healthy": True, "desired": {"r1": 2},
            "releases": {"r1": {"env": {}}}, "rolling_restart": None}  # fmt: skip
    ready = sup.pop("ready", 2)
    return {"supervisor": {**base, **sup},
            "workers": [{"worker": f"w{i}", "state": "ready"} for i in range(ready)]}  # fmt: skip


@pytest.mark.parametrize(
    ("st", "problem"),
    [
        (status(), ""),
        (status(ready=1), "1 of 2 desired workers ready"),
        (status(healthy=False, health="no worker"), "unhealthy"),
        (status(rolling_restart={"to_release": "r2", "done": False}), "rolling restart to r2"),
        (status(releases={"r1": {"env": {"FALCON_FAULTS": "latency_ms=5"}}}), "FALCON_FAULTS"),
    ],
)
def test_steady_state_problems(st: dict[str, Any], problem: str) -> None:
    found = steady_problem(st)
    assert (problem in found) if problem else found == ""


def test_applicability_refuses_faults_in_prod_and_skips_missing_stores(tmp_path: Any) -> None:
    prod = Settings(home=tmp_path, profile="prod")
    status_, why = applicability(drill_named("error-spike"), prod, DrillOptions())
    assert status_ == "refused"
    assert "--allow-faults" in why
    assert applicability(drill_named("error-spike"), prod, DrillOptions(allow_faults=True)) == (
        "",
        "",
    )
    dev = Settings(home=tmp_path)
    assert applicability(drill_named("redis-down"), dev, DrillOptions())[0] == "not_applicable"
    assert applicability(drill_named("postgres-slow"), dev, DrillOptions())[0] == "not_applicable"
    assert applicability(drill_named("kill-worker"), prod, DrillOptions()) == ("", "")


def test_catalog_names_are_unique_and_unknown_names_are_refused() -> None:
    names = [d.name for d in CATALOG]
    assert len(names) == len(set(names)) >= 10
    with pytest.raises(InvalidInputError, match="falcon drill list"):
        drill_named("kill-wroker")


def test_report_shows_numbers_checks_and_timeline() -> None:
    out = DrillOutcome("kill-worker", "failed", reason="NOT MET: x", started_at=T0, finished_at=T0 + 9,
                       injected_at=T0 + 3, detection_s=0.04, requests=100, failed=2, rows_lost=0)  # fmt: skip
    out.checks.append(j.Check("exit noticed", "exit noticed within 5 s", True, "0.04 s"))
    out.timeline += timeline_of([ev("worker_exited", 3.05, "w1", reason="Signaled")])
    text = render_markdown(out, drill_named("kill-worker"))
    assert "# Drill `kill-worker`: FAILED" in text
    assert "| requests failed | 2 of 100 |" in text
    assert "| ✅ | exit noticed within 5 s | 0.04 s |" in text
    assert "| +0.1 | journal: worker_exited w1 r1 Signaled |" in text


def test_error_spike_on_a_deployment_with_incidents_needs_one_opened() -> None:
    a = answers(*[(0.1 * i, 0.1 * i + 0.01, 500 if i % 2 else 200) for i in range(20)])
    alert = ev("alert_firing", 4.0, name="FalconHighErrorRate")
    obs = j.Observation(T0, [alert], a, T0 + 10)
    checks, _ = j.judge_error_spike(obs, alert_bound_s=10, ratio=0.3, incidents=True)
    assert by_key(checks)["incident opened"] is False
    opened = ev("incident_opened", 5.0, incident="INC-2026-11-30-001")
    obs = j.Observation(T0, [alert, opened], a, T0 + 10)
    checks, t = j.judge_error_spike(obs, alert_bound_s=10, ratio=0.3, incidents=True)
    assert by_key(checks)["incident opened"] is True
    assert t.measured["incident"] == "INC-2026-11-30-001"
    assert t.measured["incident_mitigated"] is False


def test_bad_deploy_refused_by_the_gate_and_never_started() -> None:
    from falcon_platform.drills.deploys import judge_refused

    state = {"release": "r5", "phase": "refused", "reason": "memory slope", "gate": {}}
    refused = {**ev("gate_refused", 12.0), "release": "r5"}
    ok = answers((1.0, 1.1, 200), (2.0, 2.1, 200))
    checks, t = judge_refused(j.Observation(T0, [refused], ok, T0 + 13), state)
    assert all(c.met for c in checks)
    assert t.detection_s == pytest.approx(12.0)
    started = {**ev("worker_started", 5.0, "w9"), "release": "r5"}
    checks, _ = judge_refused(j.Observation(T0, [refused, started], ok, T0 + 13), state)
    assert by_key(checks)["never_started"] is False


def test_bad_deploy_forced_needs_abort_without_oom_and_few_failures() -> None:
    from falcon_platform.drills.deploys import judge_aborted

    state = {"release": "r6", "phase": "aborted", "first_canary_traffic_at": T0 + 4}
    aborted = {**ev("rollout_aborted", 7.0), "release": "r6"}
    back = ev("rollback_finished", 9.0)
    opened = ev("incident_joined", 7.5, incident="INC-2026-11-30-002")
    paged = {**ev("alert_firing", 11.0, name="FalconCanaryAborted"), "release": "r6"}
    a = answers(*[(0.1 * i, 0.1 * i + 0.02, 200) for i in range(100)])
    obs = j.Observation(T0, [aborted, back, opened, paged], a, T0 + 10)
    checks, t = judge_aborted(obs, state, incidents=True)
    assert all(c.met for c in checks), checks
    other_release = {**paged, "release": "r5"}
    unpaged = j.Observation(T0, [aborted, back, opened, other_release], a, T0 + 10)
    assert by_key(judge_aborted(unpaged, state, incidents=True)[0])["canary alert fired"] is False
    assert (t.detection_s, t.mitigation_s) == (pytest.approx(3.0), pytest.approx(5.0))
    assert t.measured["incident"] == "INC-2026-11-30-002"
    oom = {**ev("worker_exited", 6.0, "w9", oom_killed=True, reason="OOMKilled"), "release": "r6"}
    checks, _ = judge_aborted(j.Observation(T0, [aborted, oom], a, T0 + 10), state, incidents=False)
    assert by_key(checks)["no_oom_kill"] is False
