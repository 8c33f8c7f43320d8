"""An incident as plain data: id, severity, status (a transition table), times, triggers.

Everything here is pure: the store persists :class:`Incident` as JSON, the service applies
the functions below and journals what changed::

    inc = open_incident(signal, incident_id="INC-2026-11-30-001", now=signal.ts)
    inc = apply_action(inc, Action.MITIGATE, now=t, by="auto")
    assert inc.status is Status.MITIGATED
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from falcon_platform.errors import InvalidInputError, RuntimeStateError

INCIDENT_ID = re.compile(r"^INC-(\d{4}-\d{2}-\d{2})-(\d{3,})$")


class Severity(StrEnum):
    """P0 is the worst. Ordered by ``rank`` (0 = P0)."""

    P0 = "P0"
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"

    @property
    def rank(self) -> int:
        return int(self.value[1])


def worst(*severities: Severity) -> Severity:
    return min(severities, key=lambda s: s.rank)


class Status(StrEnum):
    OPEN = "open"
    MITIGATED = "mitigated"
    RESOLVED = "resolved"


class Action(StrEnum):
    SIGNAL = "signal"  # a trigger fired (again): joins, or reopens a mitigated incident
    ACK = "ack"
    NOTE = "note"
    MITIGATE = "mitigate"
    RESOLVE = "resolve"


# (status, action) -> next status. Anything missing is refused (409 on the API).
TRANSITIONS: dict[tuple[Status, Action], Status] = {
    (Status.OPEN, Action.SIGNAL): Status.OPEN,
    (Status.OPEN, Action.ACK): Status.OPEN,
    (Status.OPEN, Action.NOTE): Status.OPEN,
    (Status.OPEN, Action.MITIGATE): Status.MITIGATED,
    (Status.OPEN, Action.RESOLVE): Status.RESOLVED,
    (Status.MITIGATED, Action.SIGNAL): Status.OPEN,  # the fault came back: reopened
    (Status.MITIGATED, Action.ACK): Status.MITIGATED,
    (Status.MITIGATED, Action.NOTE): Status.MITIGATED,
    (Status.MITIGATED, Action.RESOLVE): Status.RESOLVED,
    (Status.RESOLVED, Action.NOTE): Status.RESOLVED,  # postmortem remarks after the fact
}


class InvalidTransitionError(RuntimeStateError):
    code = "invalid_transition"


def next_status(status: Status, action: Action) -> Status:
    """The status after ``action`` (pure); raises :class:`InvalidTransitionError`."""
    try:
        return TRANSITIONS[(status, action)]
    except KeyError:
        allowed = sorted(a.value for (s, a) in TRANSITIONS if s is status)
        raise InvalidTransitionError(
            f"cannot {action.value} an incident that is {status.value} "
            f"(allowed: {', '.join(allowed) or 'nothing'})"
        ) from None


@dataclass(frozen=True, slots=True)
class Trigger:
    """One signal that opened or joined the incident; ``active`` until it clears."""

    key: str  # dedupe identity, e.g. "alert:FalconHighErrorRate:3f2a", "crash_loop:r2"
    kind: str  # alert | crash_loop | oom_burst | rollout_aborted | no_ready_worker | manual
    title: str
    first_ts: float
    last_ts: float
    active: bool = True
    cleared_ts: float | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trigger:
        return cls(**data)


@dataclass(frozen=True, slots=True)
class Note:
    ts: float
    author: str
    text: str

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Note:
        return cls(**data)


@dataclass(frozen=True, slots=True)
class Incident:
    id: str
    title: str
    severity: Severity
    status: Status
    started_at: float  # the first related signal (not the alert)
    detected_at: float  # Falcon (or a human) declared it
    opened_by: str = "falcon"  # "falcon" (automatic) or the human's name
    severity_set_by: str = "falcon"  # a human's override sticks: no automatic change
    commander: str | None = None
    responders: tuple[str, ...] = ()
    acknowledged_at: float | None = None
    mitigated_at: float | None = None
    mitigated_by: str | None = None
    resolved_at: float | None = None
    resolved_by: str | None = None
    triggers: tuple[Trigger, ...] = ()
    alerts: tuple[str, ...] = ()
    releases: tuple[str, ...] = ()
    workers: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    notes: tuple[Note, ...] = field(default_factory=tuple)
    reopened: int = 0

    @property
    def active_triggers(self) -> list[Trigger]:
        return [t for t in self.triggers if t.active]

    def trigger(self, key: str) -> Trigger | None:
        return next((t for t in self.triggers if t.key == key), None)

    def end(self, now: float) -> float:
        """End of the impact window: mitigation (else resolution, else now)."""
        return self.mitigated_at or self.resolved_at or now

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["severity"] = self.severity.value
        data["status"] = self.status.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Incident:
        d = dict(data)
        d["severity"] = Severity(d["severity"])
        d["status"] = Status(d["status"])
        d["triggers"] = tuple(Trigger.from_dict(t) for t in d.get("triggers", ()))
        d["notes"] = tuple(Note.from_dict(n) for n in d.get("notes", ()))
        for key in ("responders", "alerts", "releases", "workers", "tags"):
            d[key] = tuple(d.get(key, ()))
        return cls(**d)


def incident_day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def next_incident_id(existing: list[str], now: float) -> str:
    """``INC-YYYY-MM-DD-NNN``: one more than the highest number of ``now``'s UTC day."""
    day = incident_day(now)
    numbers = [
        int(m.group(2)) for i in existing if (m := INCIDENT_ID.match(i)) and m.group(1) == day
    ]
    return f"INC-{day}-{max(numbers, default=0) + 1:03d}"


def check_incident_id(text: str) -> str:
    if not INCIDENT_ID.match(text):
        raise InvalidInputError(
            f"{text!r} is not an incident id; they look like INC-2026-11-30-001 "
            "(`falcon incident list` shows them)"
        )
    return text


def _add(items: tuple[str, ...], *new: str | None) -> tuple[str, ...]:
    out = list(items)
    out += [n for n in new if n and n not in out]
    return tuple(out)


def apply_action(
    inc: Incident,
    action: Action,
    *,
    now: float,
    by: str,
    text: str | None = None,
) -> Incident:
    """A human's (or Falcon's) action on the incident, through the transition table."""
    status = next_status(inc.status, action)
    if action is Action.ACK:
        return replace(
            inc,
            acknowledged_at=inc.acknowledged_at or now,
            commander=inc.commander or by,
            responders=_add(inc.responders, by),
        )
    if action is Action.NOTE:
        if not text or not text.strip():
            raise InvalidInputError("a note needs text: falcon incident note ID 'what you saw'")
        return replace(inc, notes=(*inc.notes, Note(now, by, text.strip())))
    if action is Action.MITIGATE:
        return replace(inc, status=status, mitigated_at=now, mitigated_by=by)
    if action is Action.RESOLVE:
        return replace(
            inc,
            status=status,
            resolved_at=now,
            resolved_by=by,
            mitigated_at=inc.mitigated_at or now,
            mitigated_by=inc.mitigated_by or by,
        )
    raise InvalidTransitionError(f"{action.value} is not a human action")  # pragma: no cover
