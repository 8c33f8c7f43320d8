"""The supervisor's incident watcher: reads new journal events, turns them into signals.

It reads the journal (not a hook in ``record``) so events written by other processes --
``falcon release`` in the CLI, Alertmanager's webhook -- count the same as the
supervisor's own. Run as a ``PeriodicTask``::

    watcher = IncidentWatcher(service, journal, spec.incidents, workers_total=lambda: 2)
    await watcher.tick(time.time())
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

from falcon_platform.config.spec import IncidentSpec
from falcon_platform.events.journal import Event, EventJournal, EventKind
from falcon_platform.incidents.model import Incident, Status
from falcon_platform.incidents.service import IncidentService
from falcon_platform.incidents.signals import (
    WATCHED_KINDS,
    is_abnormal_exit,
    is_oom_exit,
    oom_burst,
    oom_burst_signal,
    severity_for,
    signals_from_event,
)

log = logging.getLogger("falcon.incidents")

# Events are journaled with their own time, which can be a little behind the moment they are
# written (an alert evaluation runs in a thread); each read overlaps the last by this much.
_OVERLAP_S = 30.0


def _identity(e: Event) -> tuple[object, ...]:
    return (e.id,) if e.id is not None else (e.ts, e.kind, e.release, e.worker)


class IncidentWatcher:
    def __init__(
        self,
        service: IncidentService,
        journal: EventJournal,
        policy: IncidentSpec,
        *,
        since: float,
        workers_total: Callable[[], int] = lambda: 1,
        failed_share: Callable[[float, float], float | None] = lambda start, end: None,
        rescore_every_s: float = 15.0,
    ) -> None:
        self.service = service
        self.journal = journal
        self.policy = policy
        self.cursor = since
        self.workers_total = workers_total
        self.failed_share = failed_share  # (start, end) -> share of requests failed, if known
        self.rescore_every_s = rescore_every_s
        self._rescored_at = since
        self._seen: dict[tuple[object, ...], float] = {}
        self._ooms: deque[Event] = deque(maxlen=1000)
        self._burst = False
        self._context: deque[Event] = deque(maxlen=5000)  # recent watched events
        # No worker ready before the first one ever was is a start-up, not an outage.
        self._ever_ready = False

    def tick(self, now: float) -> list[Incident]:
        """Process what was journaled since the last tick; returns the incidents changed."""
        found = self.journal.query(
            since=self.cursor - _OVERLAP_S, kinds=[*sorted(WATCHED_KINDS), EventKind.WORKER_READY]
        )
        changed: list[Incident] = []
        for event in found:
            key = _identity(event)
            if key in self._seen:
                continue
            self._seen[key] = event.ts
            self._context.append(event)
            changed += self._handle(event)
            self.cursor = max(self.cursor, event.ts)
        changed += self._check_burst(now)
        if now - self._rescored_at >= self.rescore_every_s:
            # Errors pile up without new signals: re-score open incidents' blast radius.
            self._rescored_at = now
            changed += [
                self._escalate(i, now) for i in self.service.unresolved() if i.status is Status.OPEN
            ]
        horizon = self.cursor - 2 * _OVERLAP_S
        self._seen = {k: ts for k, ts in self._seen.items() if ts >= horizon}
        while self._context and self._context[0].ts < now - self.policy.lookback - _OVERLAP_S:
            self._context.popleft()
        return changed

    def _handle(self, event: Event) -> list[Incident]:
        changed: list[Incident] = []
        if event.kind == EventKind.WORKER_READY:
            self._ever_ready = True
        if is_oom_exit(event):
            self._ooms.append(event)
        for signal in signals_from_event(event):
            if signal.firing and not self.policy.auto_open:
                continue
            if signal.kind == "no_ready_worker" and signal.firing and not self._ever_ready:
                continue
            inc = self.service.observe(signal, list(self._context))
            if inc is not None:
                changed.append(self._escalate(inc, event.ts))
        if is_abnormal_exit(event):
            changed += self._check_burst(event.ts)
            # Another worker died while an incident is open: its blast radius grew.
            changed += [
                self._escalate(i, event.ts)
                for i in self.service.unresolved()
                if i.status is Status.OPEN
            ]
        return changed

    def _escalate(self, inc: Incident, now: float) -> Incident:
        """Raise the severity by the blast radius: the share of workers that died and the
        share of requests that failed since the incident started."""
        if inc.severity_set_by != "falcon" or inc.resolved_at is not None:
            return inc
        dead = {
            e.worker
            for e in self._context
            if e.worker and is_abnormal_exit(e) and e.ts >= inc.started_at
        }
        share = len(dead) / max(1, self.workers_total())
        failed = self.failed_share(inc.started_at, max(now, inc.started_at))
        wanted = severity_for(inc.severity, workers_share=share, requests_share=failed)
        if wanted == inc.severity:
            return inc
        why = f"{len(dead)} of {self.workers_total()} workers died" + (
            f"; {failed:.1%} of requests failed" if failed is not None else ""
        )
        return self.service.escalate(inc.id, wanted, why=why)

    def _check_burst(self, now: float) -> list[Incident]:
        times = [e.ts for e in self._ooms]
        burst = oom_burst(
            times, now, kills=self.policy.oom_burst_kills, window_s=self.policy.oom_burst_window
        )
        if burst == self._burst:
            return []
        if burst and not self.policy.auto_open:
            return []
        self._burst = burst
        # It clears once the window holds fewer kills than a burst (checked every tick).
        signal = oom_burst_signal(
            list(self._ooms), now, firing=burst, window_s=self.policy.oom_burst_window
        )
        inc = self.service.observe(signal, list(self._context))
        return [self._escalate(inc, now)] if inc is not None else []
