"""Which journal events open, join or clear an incident (pure).

A :class:`Signal` is a trigger firing or clearing, with a key that identifies it across
both (``crash_loop:r2`` fires on ``crash_loop_entered`` and clears on ``crash_loop_left``)::

    for event in journal.query(since=cursor):
        for signal in signals_from_event(event):
            ...

Triggers: a critical alert firing, a crash loop, an aborted rollout (``rollout_aborted``
from the releases package, cleared by ``rollback_finished``), no worker ready (the
supervisor answering 503), and a burst of OOM kills (see :func:`oom_burst`).

An alert that reports a journal event which is a trigger itself (``FalconCanaryAborted``
reports ``rollout_aborted``) is an *echo*: its firing is attached to the incident that event
opened (listed among its alerts) and never opens, reopens or clears one, so one abort is one
incident whose mitigation time is the rollback's, not the end of the alert's window.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from falcon_platform.events.journal import Event, EventKind
from falcon_platform.incidents.model import Severity, worst
from falcon_platform.observability.alert_defs import CANARY_ABORTED

# Kinds journaled by the releases package (issue 14); strings, not an import (layering).
ROLLOUT_ABORTED = "rollout_aborted"
ROLLBACK_FINISHED = "rollback_finished"
RELEASE_KINDS = frozenset(
    {
        "release_created",
        "gate_passed",
        "gate_refused",
        "gate_skipped",
        "rollout_started",
        "rollout_step",
        "canary_analysis",
        "rollout_promoted",
        "rollout_aborted",
        "rollback_started",
        "rollback_finished",
    }
)

# Echo alerts -> the signal kind whose event they report (the key is "<kind>:<release>").
ECHO_ALERTS: dict[str, str] = {CANARY_ABORTED: "rollout_aborted"}

# The severity a trigger alone implies, before the blast radius is known.
BASE_SEVERITY: dict[str, Severity] = {
    "no_ready_worker": Severity.P0,
    "crash_loop": Severity.P1,
    "alert": Severity.P1,  # critical alerts only
    "oom_burst": Severity.P2,
    "rollout_aborted": Severity.P2,  # the canary caught it: a share of traffic at most
    "manual": Severity.P2,
}

# Kinds the watcher reads from the journal.
WATCHED_KINDS = frozenset(
    {
        EventKind.ALERT_FIRING,
        EventKind.ALERT_RESOLVED,
        EventKind.CRASH_LOOP_ENTERED,
        EventKind.CRASH_LOOP_LEFT,
        EventKind.SERVICE_UNAVAILABLE,
        EventKind.SERVICE_AVAILABLE,
        EventKind.WORKER_EXITED,
        ROLLOUT_ABORTED,
        ROLLBACK_FINISHED,
    }
)


@dataclass(frozen=True, slots=True)
class Signal:
    key: str
    kind: str
    firing: bool  # True: fires (opens or joins); False: clears
    ts: float
    title: str = ""
    started_at: float | None = None  # when the underlying condition began, if known
    severity: Severity = Severity.P2
    release: str | None = None
    worker: str | None = None
    alert: str | None = None
    echo: bool = False  # only attaches to the incident holding ``key``; see the module doc


def _alert_key(details: Mapping[str, Any]) -> str:
    labels = details.get("labels") or {}
    shown = ",".join(
        f"{k}={v}"
        for k, v in sorted(labels.items())
        if k not in {"alertname", "severity", "service"}
    )
    name = details.get("name") or labels.get("alertname") or "unknown"
    return f"alert:{name}{{{shown}}}"


def signals_from_event(event: Event) -> list[Signal]:
    """The trigger changes one journal event carries (often none)."""
    d = event.details
    kind = event.kind
    if kind in (EventKind.ALERT_FIRING, EventKind.ALERT_RESOLVED):
        name = str(d.get("name") or (d.get("labels") or {}).get("alertname") or "unknown")
        firing = kind == EventKind.ALERT_FIRING
        if firing and d.get("severity") != "critical":
            return []  # warnings and info are context (timeline), not incidents
        summary = (d.get("annotations") or {}).get("summary") or name
        if name in ECHO_ALERTS:
            if not firing:
                return []  # the event's own pair (rollback_finished) clears the trigger
            release = event.release or (d.get("labels") or {}).get("release")
            return [
                Signal(
                    f"{ECHO_ALERTS[name]}:{release}",
                    "alert",
                    True,
                    event.ts,
                    title=str(summary),
                    severity=BASE_SEVERITY["alert"],
                    release=release,
                    alert=name,
                    echo=True,
                )
            ]
        since = d.get("active_since")
        return [
            Signal(
                _alert_key(d),
                "alert",
                firing,
                event.ts,
                title=str(summary),
                started_at=float(since) if isinstance(since, int | float) else None,
                severity=BASE_SEVERITY["alert"],
                release=event.release,
                worker=event.worker,
                alert=name,
            )
        ]
    if kind in (EventKind.CRASH_LOOP_ENTERED, EventKind.CRASH_LOOP_LEFT):
        firing = kind == EventKind.CRASH_LOOP_ENTERED
        return [
            Signal(
                f"crash_loop:{event.release}",
                "crash_loop",
                firing,
                event.ts,
                title=f"Workers of release {event.release} in a crash loop "
                f"({d.get('restarts_in_window', '?')} restarts in {d.get('window_s', '?')} s)",
                severity=BASE_SEVERITY["crash_loop"],
                release=event.release,
            )
        ]
    if kind in (EventKind.SERVICE_UNAVAILABLE, EventKind.SERVICE_AVAILABLE):
        firing = kind == EventKind.SERVICE_UNAVAILABLE
        no_ready_for = d.get("no_ready_for_s")
        started = event.ts - float(no_ready_for) if isinstance(no_ready_for, int | float) else None
        return [
            Signal(
                "no_ready_worker",
                "no_ready_worker",
                firing,
                event.ts,
                title=f"No worker ready: the supervisor answers 503 ({d.get('why', '')})",
                started_at=started,
                severity=BASE_SEVERITY["no_ready_worker"],
                release=event.release,
            )
        ]
    if kind in (ROLLOUT_ABORTED, ROLLBACK_FINISHED):
        # The rollback's own release may be the one rolled back to; the aborted one is
        # ``from_release`` when given.
        aborted = (d.get("from_release") if kind == ROLLBACK_FINISHED else None) or event.release
        by = " by canary analysis" if d.get("cause", "analysis") == "analysis" else ""
        return [
            Signal(
                f"rollout_aborted:{aborted}",
                "rollout_aborted",
                kind == ROLLOUT_ABORTED,
                event.ts,
                title=f"Rollout of release {aborted} aborted{by}"
                + (f": {d['reason']}" if d.get("reason") else ""),
                severity=BASE_SEVERITY["rollout_aborted"],
                release=aborted,
            )
        ]
    return []


def is_oom_exit(event: Event) -> bool:
    return event.kind == EventKind.WORKER_EXITED and bool(event.details.get("oom_killed"))


def is_abnormal_exit(event: Event) -> bool:
    """A worker death that is a symptom (not a planned stop, recycle or rolling restart)."""
    if event.kind != EventKind.WORKER_EXITED:
        return False
    # Values of supervisor.restarts.ExitReason (strings: the journal is the contract).
    reason = str(event.details.get("reason", ""))
    return bool(event.details.get("oom_killed")) or reason not in {"Stopped", "Recycled"}


def oom_burst(oom_times: Sequence[float], now: float, *, kills: int, window_s: float) -> bool:
    """At least ``kills`` OOM kills within the last ``window_s`` seconds (pure)."""
    return sum(1 for t in oom_times if now - window_s < t <= now) >= kills


def oom_burst_signal(
    oom_events: Sequence[Event], now: float, *, firing: bool, window_s: float
) -> Signal:
    recent = [e for e in oom_events if now - window_s < e.ts <= now] or list(oom_events[-1:])
    workers = sorted({e.worker for e in recent if e.worker})
    return Signal(
        "oom_burst",
        "oom_burst",
        firing,
        now,
        title=f"{len(recent)} workers OOM-killed within {window_s:g} s ({', '.join(workers)})",
        started_at=min((e.ts for e in recent), default=now),
        severity=BASE_SEVERITY["oom_burst"],
        release=recent[-1].release if recent else None,
    )


def severity_for(
    base: Severity,
    *,
    workers_share: float | None = None,
    requests_share: float | None = None,
) -> Severity:
    """The trigger's severity raised by the blast radius (share of workers or requests hit).

    >= 50% of requests or every worker: P0; >= 5% or half the workers: P1; >= 1%: P2.
    """
    blast = Severity.P3
    w = workers_share or 0.0
    r = requests_share or 0.0
    if r >= 0.5 or w >= 1.0:
        blast = Severity.P0
    elif r >= 0.05 or w >= 0.5:
        blast = Severity.P1
    elif r >= 0.01:
        blast = Severity.P2
    return worst(base, blast)


def first_related_ts(events: Iterable[Event], signal: Signal, *, lookback_s: float) -> float:
    """The incident's start: the earliest symptom (abnormal worker exit, OOM, critical alert
    condition) within ``lookback_s`` before the signal, else the signal's own
    start (an alert's ``active_since``), else its time."""
    start = signal.started_at if signal.started_at is not None else signal.ts
    for e in events:
        if not signal.ts - lookback_s <= e.ts <= signal.ts:
            continue
        if is_abnormal_exit(e):
            start = min(start, e.ts)
        elif (
            e.kind == EventKind.ALERT_FIRING
            and e.details.get("severity") == "critical"
            and e.details.get("name") not in ECHO_ALERTS  # its event is the symptom, not it
        ):
            since = e.details.get("active_since")
            if isinstance(since, int | float):
                start = min(start, float(since))
    return start
