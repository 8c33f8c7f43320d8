"""The shell around the pure decisions: load, decide, save, journal.

Used by the supervisor's watcher (signals) and the control API (humans)::

    service = IncidentService(SqlIncidentStore(engine), journal, spec.incidents)
    service.observe(signal, context=recent_events)        # automatic
    service.act("INC-2026-11-30-001", Action.ACK, by="alice")
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from prometheus_client import CollectorRegistry, Gauge

from falcon_platform.config.spec import IncidentSpec
from falcon_platform.errors import InvalidInputError
from falcon_platform.events.journal import Event, EventJournal, EventKind
from falcon_platform.incidents import decide as rules
from falcon_platform.incidents.actions import (
    ActionItem,
    ActionStatus,
    SqlActionStore,
    advance,
    new_action,
    overdue,
)
from falcon_platform.incidents.model import (
    Action,
    Incident,
    Severity,
    Status,
    apply_action,
    incident_day,
    next_incident_id,
)
from falcon_platform.incidents.signals import Signal, first_related_ts
from falcon_platform.incidents.store import SqlIncidentStore
from falcon_platform.observability import names

log = logging.getLogger("falcon.incidents")

_F = TypeVar("_F", bound=Callable[..., Any])


def _locked(method: _F) -> _F:
    @functools.wraps(method)
    def wrapper(self: IncidentService, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            return method(self, *args, **kwargs)

    return cast(_F, wrapper)


ACTION_KIND = {
    Action.ACK: EventKind.INCIDENT_ACKNOWLEDGED,
    Action.NOTE: EventKind.INCIDENT_NOTE,
    Action.MITIGATE: EventKind.INCIDENT_MITIGATED,
    Action.RESOLVE: EventKind.INCIDENT_RESOLVED,
}


class IncidentService:
    def __init__(
        self,
        store: SqlIncidentStore,
        journal: EventJournal,
        policy: IncidentSpec,
        *,
        actions: SqlActionStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.actions = actions
        self.journal = journal
        self.policy = policy
        self.clock = clock
        # Read-modify-write of one incident: the watcher (a thread) and the API both write.
        self.lock = threading.RLock()
        self._open_gauge: Gauge | None = None
        self._overdue_gauge: Gauge | None = None

    def _record(self, kind: str, inc: Incident, ts: float, **details: Any) -> None:
        self.journal.record(
            kind,
            release=inc.releases[-1] if inc.releases else None,
            details={
                "incident": inc.id,
                "status": inc.status.value,
                "severity": inc.severity.value,
                **details,
            },
            ts=ts,
        )

    def _new_id(self, now: float) -> str:
        return next_incident_id(self.store.ids_of_day(incident_day(now)), now)

    def unresolved(self) -> list[Incident]:
        return self.store.find(status=[Status.OPEN, Status.MITIGATED])

    @_locked
    def observe(self, signal: Signal, context: Sequence[Event] = ()) -> Incident | None:
        """Apply one signal; returns the incident it changed (None: ignored)."""
        now = self.clock()
        decision = rules.decide(
            signal, self.unresolved(), now=signal.ts, reopen_window_s=self.policy.reopen_window
        )
        start = first_related_ts(context, signal, lookback_s=self.policy.lookback)
        if decision.verb == "ignore":
            return None
        if decision.verb == "open":
            inc = rules.open_incident(signal, self._new_id(signal.ts), start=start)
            self.store.save(inc)
            self._record(
                EventKind.INCIDENT_OPENED,
                inc,
                signal.ts,
                trigger=signal.key,
                title=inc.title,
                automatic=True,
            )
            log.error("incident %s opened (%s): %s", inc.id, inc.severity, inc.title)
            return inc
        assert decision.incident_id is not None
        inc = self.store.get(decision.incident_id)
        if decision.verb == "attach":
            attached = rules.attach(inc, signal)
            if attached != inc:
                self.store.save(attached)
            return attached
        if decision.verb in ("join", "reopen"):
            known = inc.trigger(signal.key)
            updated = rules.join(inc, signal, start=start)
            self.store.save(updated)
            if decision.verb == "reopen":
                self._record(
                    EventKind.INCIDENT_REOPENED,
                    updated,
                    signal.ts,
                    trigger=signal.key,
                    automatic=True,
                )
            elif known is None or not known.active:
                self._record(
                    EventKind.INCIDENT_JOINED,
                    updated,
                    signal.ts,
                    trigger=signal.key,
                    automatic=True,
                )
            if updated.severity != inc.severity:
                self._record(
                    EventKind.INCIDENT_SEVERITY_CHANGED,
                    updated,
                    signal.ts,
                    previous=inc.severity.value,
                    automatic=True,
                )
            return updated
        # clear
        updated = rules.clear(inc, signal.key, signal.ts)
        mitigated = rules.auto_mitigate(updated, now)
        final = mitigated or updated
        self.store.save(final)
        if mitigated is not None:
            self._record(
                EventKind.INCIDENT_MITIGATED,
                final,
                final.mitigated_at or signal.ts,
                by=final.mitigated_by,
                automatic=True,
                cleared=[t.key for t in final.triggers],
            )
            log.warning("incident %s mitigated: every trigger cleared", final.id)
        return final

    @_locked
    def forget_triggers(self, now: float, *, why: str) -> list[Incident]:
        """A new supervisor starts with fresh alert, crash-loop and readiness state: the
        triggers an earlier one left active would never be cleared by it. Clear them (and
        mitigate what that leaves without a trigger); a fault that persists fires again and
        reopens the incident within ``reopen_window``."""
        changed: list[Incident] = []
        for inc in self.unresolved():
            stale = [t.key for t in inc.active_triggers if t.kind != "manual"]
            if not stale:
                continue
            updated = inc
            for key in stale:
                updated = rules.clear(updated, key, now)
            final = rules.auto_mitigate(updated, now) or updated
            self.store.save(final)
            if final.status is not inc.status:
                self._record(
                    EventKind.INCIDENT_MITIGATED,
                    final,
                    now,
                    by=final.mitigated_by,
                    automatic=True,
                    cleared=stale,
                    why=why,
                )
            changed.append(final)
        return changed

    @_locked
    def open_manual(
        self,
        title: str,
        *,
        by: str,
        severity: Severity = Severity.P2,
        tags: Sequence[str] = (),
        commander: str | None = None,
        release: str | None = None,
    ) -> Incident:
        if not title.strip():
            raise InvalidInputError(
                "an incident needs a title: falcon incident open 'what is wrong'"
            )
        now = self.clock()
        signal = Signal(
            f"manual:{now:.3f}", "manual", True, now, title=title.strip(), release=release
        )
        inc = rules.open_incident(signal, self._new_id(now), start=now, severity=severity)
        inc = replace(
            inc,
            opened_by=by,
            severity_set_by=by,
            commander=commander,
            responders=(by,),
            tags=tuple(dict.fromkeys([*inc.tags, *tags])),
        )
        self.store.save(inc)
        self._record(EventKind.INCIDENT_OPENED, inc, now, title=inc.title, by=by, automatic=False)
        return inc

    @_locked
    def act(
        self, incident_id: str, action: Action, *, by: str, text: str | None = None
    ) -> Incident:
        """A human's ack, note, mitigate or resolve (checked by the transition table)."""
        now = self.clock()
        inc = self.store.get(incident_id)
        updated = apply_action(inc, action, now=now, by=by, text=text)
        if action is Action.RESOLVE:
            # A human resolving closes the triggers too: nothing is left to clear.
            updated = replace(
                updated,
                triggers=tuple(
                    replace(t, active=False, cleared_ts=t.cleared_ts or now)
                    for t in updated.triggers
                ),
            )
        self.store.save(updated)
        extra: dict[str, Any] = {"by": by, "automatic": False}
        if text:
            extra["text"] = text.strip()
        self._record(ACTION_KIND[action], updated, now, **extra)
        return updated

    @_locked
    def escalate(self, incident_id: str, severity: Severity, *, why: str) -> Incident:
        """Falcon raises the severity (blast radius); a human's setting is left alone."""
        inc = self.store.get(incident_id)
        if inc.severity_set_by != "falcon" or severity.rank >= inc.severity.rank:
            return inc
        updated = replace(inc, severity=severity)
        self.store.save(updated)
        self._record(
            EventKind.INCIDENT_SEVERITY_CHANGED,
            updated,
            self.clock(),
            previous=inc.severity.value,
            why=why,
            automatic=True,
        )
        return updated

    @_locked
    def set_severity(self, incident_id: str, severity: Severity, *, by: str) -> Incident:
        inc = self.store.get(incident_id)
        updated = rules.set_severity(inc, severity, by=by)
        self.store.save(updated)
        self._record(
            EventKind.INCIDENT_SEVERITY_CHANGED,
            updated,
            self.clock(),
            previous=inc.severity.value,
            by=by,
            automatic=False,
        )
        return updated

    def _action_store(self) -> SqlActionStore:
        if self.actions is None:
            raise InvalidInputError("action items need the relational store")
        return self.actions

    @_locked
    def add_action(
        self,
        incident_id: str,
        *,
        category: str,
        description: str,
        owner: str,
        due: str,
        link: str | None = None,
        suggested: bool = False,
    ) -> ActionItem:
        store = self._action_store()
        self.store.get(incident_id)  # 404 for an unknown incident
        now = self.clock()
        item = new_action(
            number=store.next_number(),
            incident=incident_id,
            category=category,
            description=description,
            owner=owner,
            due=due,
            now=now,
            link=link,
            suggested=suggested,
        )
        store.save(item)
        self.journal.record(EventKind.ACTION_ITEM_ADDED, details=item.to_dict(), ts=now)
        return item

    @_locked
    def advance_action(self, item_id: str, to: ActionStatus, *, by: str) -> ActionItem:
        store = self._action_store()
        now = self.clock()
        item = advance(store.get(item_id), to, now=now)
        store.save(item)
        self.journal.record(
            EventKind.ACTION_ITEM_UPDATED,
            details={
                "id": item.id,
                "incident": item.incident,
                "status": item.status.value,
                "by": by,
            },
            ts=now,
        )
        return item

    def bind_metrics(self, registry: CollectorRegistry) -> None:
        """Gauges on the supervisor's registry (served on the control port's /metrics)."""
        self._open_gauge = Gauge(
            names.INCIDENTS_OPEN,
            "Incidents open (not yet mitigated), by severity.",
            ["severity"],
            registry=registry,
        )
        self._overdue_gauge = Gauge(
            names.ACTION_ITEMS_OVERDUE,
            "Postmortem action items past their due date and not DONE.",
            registry=registry,
        )

    def refresh_metrics(self) -> None:
        """Set the gauges from the stores (the watcher calls this every few seconds)."""
        if self._open_gauge is None or self._overdue_gauge is None:
            return
        found = self.store.find(status=[Status.OPEN])
        for severity in Severity:
            self._open_gauge.labels(severity=severity.value).set(
                sum(1 for i in found if i.severity is severity)
            )
        if self.actions is not None:
            today = datetime.fromtimestamp(self.clock(), UTC).date().isoformat()
            self._overdue_gauge.set(len(overdue(self.actions.find(), today)))
