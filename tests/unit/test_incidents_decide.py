"""Incident decisions: open, dedupe into the open incident, reopen, clear, auto-mitigate."""

from __future__ import annotations

from falcon_platform.incidents.decide import (
    auto_mitigate,
    clear,
    decide,
    join,
    open_incident,
    set_severity,
)
from falcon_platform.incidents.model import Action, Severity, Status, apply_action
from falcon_platform.incidents.signals import Signal

T0 = 1_800_000_000.0


def _sig(key: str, firing: bool = True, ts: float = T0, **kw: object) -> Signal:
    kind = key.split(":")[0]
    return Signal(key, kind, firing, ts, title=key, **kw)  # type: ignore[arg-type]


def test_first_signal_opens_then_others_join_the_open_incident() -> None:
    s1 = _sig("crash_loop:r2", release="r2", severity=Severity.P1)
    assert decide(s1, [], now=T0, reopen_window_s=600).verb == "open"
    inc = open_incident(s1, "INC-2026-11-30-001", start=T0 - 30)
    assert (inc.started_at, inc.detected_at, inc.releases) == (T0 - 30, T0, ("r2",))
    s2 = _sig("alert:FalconHighErrorRate{}", ts=T0 + 20, severity=Severity.P0, alert="HighErr")
    d = decide(s2, [inc], now=T0 + 20, reopen_window_s=600)
    assert (d.verb, d.incident_id) == ("join", inc.id)
    joined = join(inc, s2, start=T0 - 60)
    assert [t.key for t in joined.triggers] == ["crash_loop:r2", "alert:FalconHighErrorRate{}"]
    assert joined.severity is Severity.P0  # rises with the worse trigger
    assert joined.started_at == T0 - 60
    assert joined.alerts == ("HighErr",)
    # The same trigger firing again does not add a second trigger.
    again = join(joined, _sig("crash_loop:r2", ts=T0 + 40))
    assert len(again.triggers) == 2
    assert again.trigger("crash_loop:r2").last_ts == T0 + 40


def test_mitigated_when_every_trigger_cleared_at_the_last_clear() -> None:
    inc = open_incident(_sig("crash_loop:r2"), "INC-2026-11-30-001", start=T0)
    inc = join(inc, _sig("oom_burst", ts=T0 + 5))
    d = decide(
        _sig("crash_loop:r2", firing=False, ts=T0 + 100), [inc], now=T0 + 100, reopen_window_s=600
    )
    assert (d.verb, d.incident_id) == ("clear", inc.id)
    inc = clear(inc, "crash_loop:r2", T0 + 100)
    assert auto_mitigate(inc, T0 + 100) is None  # the OOM burst is still active
    inc = clear(inc, "oom_burst", T0 + 150)
    done = auto_mitigate(inc, T0 + 999)
    assert done is not None
    assert (done.status, done.mitigated_at) == (Status.MITIGATED, T0 + 150)
    assert done.mitigated_by is not None
    assert done.mitigated_by.startswith("falcon")
    # A clear that no incident holds is ignored.
    assert (
        decide(_sig("crash_loop:r9", firing=False), [done], now=T0, reopen_window_s=600).verb
        == "ignore"
    )


def test_fault_back_within_the_window_reopens_later_opens_new() -> None:
    inc = open_incident(_sig("crash_loop:r2"), "INC-2026-11-30-001", start=T0)
    inc = auto_mitigate(clear(inc, "crash_loop:r2", T0 + 100), T0 + 100)
    assert inc is not None
    back = _sig("crash_loop:r2", ts=T0 + 400)
    d = decide(back, [inc], now=T0 + 400, reopen_window_s=600)
    assert (d.verb, d.incident_id) == ("reopen", inc.id)
    reopened = join(inc, back)
    assert (reopened.status, reopened.mitigated_at, reopened.reopened) == (Status.OPEN, None, 1)
    assert reopened.trigger("crash_loop:r2").active  # type: ignore[union-attr]
    assert (
        decide(_sig("crash_loop:r2", ts=T0 + 701), [inc], now=T0 + 701, reopen_window_s=600).verb
        == "open"
    )


def test_human_severity_sticks_and_manual_incidents_wait_for_a_human() -> None:
    inc = open_incident(_sig("manual:1"), "INC-2026-11-30-001", start=T0, severity=Severity.P3)
    inc = set_severity(inc, Severity.P3, by="alice")
    joined = join(inc, _sig("no_ready_worker", severity=Severity.P0))
    assert joined.severity is Severity.P3  # alice's call stands
    # The manual trigger never clears by itself: no automatic mitigation.
    assert auto_mitigate(clear(joined, "no_ready_worker", T0 + 5), T0 + 5) is None
    assert apply_action(joined, Action.MITIGATE, now=T0 + 9, by="alice").status is Status.MITIGATED
