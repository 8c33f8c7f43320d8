"""Incident model: ids, the status transition table, severity mapping, signals from events."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from falcon_platform.errors import InvalidInputError
from falcon_platform.events.journal import Event
from falcon_platform.incidents.model import (
    TRANSITIONS,
    Action,
    Incident,
    InvalidTransitionError,
    Severity,
    Status,
    apply_action,
    check_incident_id,
    next_incident_id,
    next_status,
)
from falcon_platform.incidents.signals import (
    first_related_ts,
    is_abnormal_exit,
    oom_burst,
    severity_for,
    signals_from_event,
)

T0 = datetime(2026, 11, 30, 14, 30, tzinfo=UTC).timestamp()


def _inc(**kw: object) -> Incident:
    base: dict[str, object] = {
        "id": "INC-2026-11-30-001",
        "title": "t",
        "severity": Severity.P1,
        "status": Status.OPEN,
        "started_at": T0,
        "detected_at": T0 + 60,
    }
    base.update(kw)
    return Incident(**base)  # type: ignore[arg-type]


def test_ids_count_per_utc_day() -> None:
    """INC-YYYY-MM-DD-NNN: one more than the day's highest; other days don't count."""
    assert next_incident_id([], T0) == "INC-2026-11-30-001"
    existing = ["INC-2026-11-30-001", "INC-2026-11-30-007", "INC-2026-11-29-042"]
    assert next_incident_id(existing, T0) == "INC-2026-11-30-008"
    assert next_incident_id(existing, T0 + 86400) == "INC-2026-12-01-001"
    assert check_incident_id("INC-2026-11-30-001") == "INC-2026-11-30-001"
    with pytest.raises(InvalidInputError, match="INC-2026-11-30-001"):
        check_incident_id("2026-11-30-001")


# The whole table written out by hand: (status, action) -> next, or None when refused.
EXPECTED = {
    ("open", "signal"): "open",
    ("open", "ack"): "open",
    ("open", "note"): "open",
    ("open", "mitigate"): "mitigated",
    ("open", "resolve"): "resolved",
    ("mitigated", "signal"): "open",
    ("mitigated", "ack"): "mitigated",
    ("mitigated", "note"): "mitigated",
    ("mitigated", "mitigate"): None,
    ("mitigated", "resolve"): "resolved",
    ("resolved", "signal"): None,
    ("resolved", "ack"): None,
    ("resolved", "note"): "resolved",
    ("resolved", "mitigate"): None,
    ("resolved", "resolve"): None,
}


@pytest.mark.parametrize(("status", "action"), sorted(EXPECTED))
def test_transition_table(status: str, action: str) -> None:
    expected = EXPECTED[(status, action)]
    if expected is None:
        with pytest.raises(InvalidTransitionError, match=f"cannot {action}"):
            next_status(Status(status), Action(action))
    else:
        assert next_status(Status(status), Action(action)) is Status(expected)
    assert len(TRANSITIONS) == sum(1 for v in EXPECTED.values() if v is not None)


def test_actions_set_times_and_people() -> None:
    inc = apply_action(_inc(), Action.ACK, now=T0 + 90, by="alice")
    assert (inc.acknowledged_at, inc.commander, inc.responders) == (T0 + 90, "alice", ("alice",))
    inc = apply_action(inc, Action.ACK, now=T0 + 95, by="bob")
    assert (inc.acknowledged_at, inc.commander, inc.responders) == (
        T0 + 90,
        "alice",
        ("alice", "bob"),
    )
    inc = apply_action(inc, Action.NOTE, now=T0 + 100, by="bob", text=" rollback? ")
    assert inc.notes[-1].text == "rollback?"
    with pytest.raises(InvalidInputError):
        apply_action(inc, Action.NOTE, now=T0, by="bob", text="  ")
    resolved = apply_action(inc, Action.RESOLVE, now=T0 + 600, by="alice")
    # Resolving an incident nobody marked mitigated: mitigation is the resolution.
    assert (resolved.status, resolved.mitigated_at, resolved.resolved_at) == (
        Status.RESOLVED,
        T0 + 600,
        T0 + 600,
    )
    assert Incident.from_dict(resolved.to_dict()) == resolved


@pytest.mark.parametrize(
    ("base", "workers", "requests", "expected"),
    [
        ("P2", None, None, "P2"),
        ("P2", 0.5, None, "P1"),  # half the workers
        ("P2", 1.0, None, "P0"),  # every worker
        ("P3", None, 0.01, "P2"),
        ("P3", None, 0.049, "P2"),
        ("P3", None, 0.05, "P1"),
        ("P3", 0.25, 0.5, "P0"),
        ("P0", 0.0, 0.0, "P0"),  # never lowered by a small blast
    ],
)
def test_severity_mapping(
    base: str, workers: float | None, requests: float | None, expected: str
) -> None:
    got = severity_for(Severity(base), workers_share=workers, requests_share=requests)
    assert got is Severity(expected)


def _alert(kind: str, severity: str = "critical", since: float = T0) -> Event:
    return Event(
        T0 + 120,
        kind,
        release="r2",
        details={
            "name": "FalconHighErrorRate",
            "severity": severity,
            "labels": {"alertname": "FalconHighErrorRate", "severity": severity, "release": "r2"},
            "annotations": {"summary": "error rate above 10%"},
            "active_since": since,
        },
    )


def test_signals_from_events() -> None:
    """Critical alerts fire and clear under one key; warnings are context only."""
    fire = signals_from_event(_alert("alert_firing"))
    clear = signals_from_event(_alert("alert_resolved"))
    assert [(s.key, s.firing, s.severity) for s in fire] == [
        ("alert:FalconHighErrorRate{release=r2}", True, Severity.P1)
    ]
    assert [(s.key, s.firing) for s in clear] == [("alert:FalconHighErrorRate{release=r2}", False)]
    assert fire[0].started_at == T0
    assert fire[0].title == "error rate above 10%"
    assert signals_from_event(_alert("alert_firing", severity="warning")) == []
    loop = signals_from_event(Event(T0, "crash_loop_entered", release="r7"))
    left = signals_from_event(Event(T0, "crash_loop_left", release="r7"))
    assert [(s.key, s.firing, s.severity) for s in loop + left] == [
        ("crash_loop:r7", True, Severity.P1),
        ("crash_loop:r7", False, Severity.P1),
    ]
    aborted = signals_from_event(
        Event(T0, "rollout_aborted", release="r7", details={"reason": "error ratio 0.2"})
    )
    back = signals_from_event(
        Event(T0, "rollback_finished", release="r6", details={"from_release": "r7"})
    )
    assert [(s.key, s.firing) for s in aborted + back] == [
        ("rollout_aborted:r7", True),
        ("rollout_aborted:r7", False),
    ]
    down = signals_from_event(Event(T0 + 40, "service_unavailable", details={"no_ready_for_s": 30}))
    assert [(s.key, s.severity, s.started_at) for s in down] == [
        ("no_ready_worker", Severity.P0, T0 + 10)
    ]
    assert signals_from_event(Event(T0, "worker_ready")) == []


def test_oom_burst_and_first_related_signal() -> None:
    assert oom_burst([T0, T0 + 10], T0 + 20, kills=2, window_s=300)
    assert not oom_burst([T0, T0 + 10], T0 + 305, kills=2, window_s=300)  # T0 fell out
    assert not oom_burst([T0], T0 + 1, kills=2, window_s=300)
    oom = Event(
        T0 + 5, "worker_exited", worker="w1", details={"oom_killed": True, "reason": "OOMKilled"}
    )
    stopped = Event(T0 + 1, "worker_exited", worker="w2", details={"reason": "Stopped"})
    too_old = Event(T0 - 1000, "worker_exited", worker="w2", details={"reason": "Signaled"})
    assert is_abnormal_exit(oom)
    assert not is_abnormal_exit(stopped)
    (signal,) = signals_from_event(_alert("alert_firing", since=T0 + 30))
    # The OOM kill at T0+5 came before the alert's condition (T0+30): that is the start.
    assert first_related_ts([too_old, stopped, oom], signal, lookback_s=600) == T0 + 5
    assert first_related_ts([], signal, lookback_s=600) == T0 + 30
