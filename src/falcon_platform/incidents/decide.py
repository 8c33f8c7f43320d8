"""What a signal does to the incidents (pure): open, join, reopen, clear, mitigate.

Dedupe rule: one service, one machine, so a firing signal joins the incident that is open
(whatever its trigger); a mitigated incident whose fault comes back within
``reopen_window_s`` is reopened instead of opening another; otherwise a new one opens::

    d = decide(signal, unresolved, now=signal.ts, reopen_window_s=600)
    if d.verb == "open": inc = open_incident(signal, new_id, start=...)
    elif d.verb in ("join", "reopen"): inc = join(inc, signal)
    elif d.verb == "clear": inc = clear(inc, signal.key, signal.ts); inc = auto_mitigate(inc, now) or inc
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from falcon_platform.incidents.model import (
    Action,
    Incident,
    Severity,
    Status,
    Trigger,
    apply_action,
    next_status,
    worst,
)
from falcon_platform.incidents.signals import Signal

Verb = Literal["open", "join", "reopen", "clear", "attach", "ignore"]


@dataclass(frozen=True, slots=True)
class Decision:
    verb: Verb
    incident_id: str | None = None
    why: str = ""


def decide(
    signal: Signal, unresolved: Sequence[Incident], *, now: float, reopen_window_s: float
) -> Decision:
    """Where ``signal`` goes. ``unresolved``: incidents not resolved, any order."""
    if signal.echo:
        # An alert reporting a trigger's event: it goes where that event went, or nowhere.
        holders = [i for i in unresolved if i.trigger(signal.key) is not None]
        if not holders:
            return Decision(
                "ignore", why=f"{signal.alert} echoes {signal.key}; no incident holds it"
            )
        newest = max(holders, key=lambda i: i.detected_at)
        return Decision("attach", newest.id, f"{signal.alert} echoes {signal.key}")
    if not signal.firing:
        holders = [i for i in unresolved if (t := i.trigger(signal.key)) and t.active]
        if not holders:
            return Decision("ignore", why=f"{signal.key} cleared; no incident holds it")
        newest = max(holders, key=lambda i: i.detected_at)
        return Decision("clear", newest.id, f"{signal.key} cleared")
    open_ = [i for i in unresolved if i.status is Status.OPEN]
    if open_:
        newest = max(open_, key=lambda i: i.detected_at)
        return Decision("join", newest.id, f"{signal.key} joins the open incident")
    recent = [
        i
        for i in unresolved
        if i.status is Status.MITIGATED
        and i.mitigated_at is not None
        and now - i.mitigated_at <= reopen_window_s
    ]
    if recent:
        newest = max(recent, key=lambda i: i.mitigated_at or 0.0)
        return Decision(
            "reopen",
            newest.id,
            f"{signal.key} fired {now - (newest.mitigated_at or now):.0f} s after mitigation",
        )
    return Decision("open", why=f"{signal.key} fired; no open incident")


def open_incident(
    signal: Signal,
    incident_id: str,
    *,
    start: float,
    severity: Severity | None = None,
) -> Incident:
    """A new incident from its first signal (``start``: the first related symptom)."""
    return Incident(
        id=incident_id,
        title=signal.title or signal.key,
        severity=severity or signal.severity,
        status=Status.OPEN,
        started_at=min(start, signal.ts),
        detected_at=signal.ts,
        triggers=(Trigger(signal.key, signal.kind, signal.title, signal.ts, signal.ts),),
        alerts=(signal.alert,) if signal.alert else (),
        releases=(signal.release,) if signal.release else (),
        workers=(signal.worker,) if signal.worker else (),
        tags=(signal.kind,),
    )


def _add(items: tuple[str, ...], new: str | None) -> tuple[str, ...]:
    return (*items, new) if new and new not in items else items


def join(
    inc: Incident, signal: Signal, *, start: float | None = None, severity: Severity | None = None
) -> Incident:
    """The firing ``signal`` joins ``inc`` (reopening it if mitigated). The severity only
    rises, and never changes once a human set it."""
    status = next_status(inc.status, Action.SIGNAL)
    existing = inc.trigger(signal.key)
    if existing is None:
        triggers = (
            *inc.triggers,
            Trigger(signal.key, signal.kind, signal.title, signal.ts, signal.ts),
        )
    else:
        triggers = tuple(
            replace(t, active=True, last_ts=signal.ts, cleared_ts=None)
            if t.key == signal.key
            else t
            for t in inc.triggers
        )
    new_severity = inc.severity
    if inc.severity_set_by == "falcon":
        new_severity = worst(inc.severity, severity or signal.severity)
    reopened = inc.status is Status.MITIGATED
    return replace(
        inc,
        status=status,
        severity=new_severity,
        started_at=min(inc.started_at, start if start is not None else inc.started_at),
        triggers=triggers,
        alerts=_add(inc.alerts, signal.alert),
        releases=_add(inc.releases, signal.release),
        workers=_add(inc.workers, signal.worker),
        tags=_add(inc.tags, signal.kind),
        mitigated_at=None if reopened else inc.mitigated_at,
        mitigated_by=None if reopened else inc.mitigated_by,
        reopened=inc.reopened + (1 if reopened else 0),
    )


def attach(inc: Incident, signal: Signal) -> Incident:
    """An echo alert noted on ``inc``: listed among its alerts; status and triggers unchanged."""
    return replace(inc, alerts=_add(inc.alerts, signal.alert))


def clear(inc: Incident, key: str, ts: float) -> Incident:
    """The trigger ``key`` stopped firing."""
    return replace(
        inc,
        triggers=tuple(
            replace(t, active=False, cleared_ts=ts) if t.key == key and t.active else t
            for t in inc.triggers
        ),
    )


def auto_mitigate(inc: Incident, now: float) -> Incident | None:
    """``inc`` mitigated by Falcon when it is open and every trigger has cleared, else None.

    The mitigation time is when the last trigger cleared (not when this ran)."""
    if inc.status is not Status.OPEN or not inc.triggers or inc.active_triggers:
        return None
    if all(t.kind == "manual" for t in inc.triggers):
        return None  # opened by a human: a human says when it is mitigated
    cleared = max((t.cleared_ts or now) for t in inc.triggers)
    return apply_action(inc, Action.MITIGATE, now=cleared, by="falcon (every trigger cleared)")


def set_severity(inc: Incident, severity: Severity, *, by: str) -> Incident:
    """A human's override: it sticks (automatic escalation stops)."""
    return replace(inc, severity=severity, severity_set_by=by)
