"""The supervisor's own alert evaluator: the spec's alert rules over an SLI source.

It keeps pending/firing state the way Prometheus does: a condition that becomes true
makes the alert *pending*; true for ``for`` seconds makes it *firing*; false again
makes a firing alert *resolved* (a pending one is dropped silently). Only firing and
resolved are returned as transitions, because those are what the journal and the
webhook want::

    evaluator = AlertEvaluator(spec, profile="prod")
    for transition in evaluator.evaluate(sli_store, now=clock.now()):
        journal.record(f"alert_{transition.state}", details=transition.to_dict())
    evaluator.firing()   # what `falcon alerts` shows

Pure apart from the ``source.query`` calls; time only comes in through ``now``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from falcon_platform.config.spec import Spec
from falcon_platform.observability.alert_defs import AlertDef, alert_defs
from falcon_platform.observability.conditions import LabelKey
from falcon_platform.observability.sli_source import Series, SLISource

AlertState = Literal["pending", "firing", "resolved"]
_LABEL_REF = re.compile(r"\{\{\s*\$labels\.(\w+)\s*\}\}")


def render_template(text: str, labels: Mapping[str, str]) -> str:
    """Expand ``{{ $labels.x }}`` as Prometheus does (a missing label renders empty)."""
    return _LABEL_REF.sub(lambda m: labels.get(m.group(1), ""), text)


@dataclass(frozen=True)
class Alert:
    """An active alert, shaped like Prometheus's ``/api/v1/alerts`` entries."""

    name: str
    severity: str
    state: AlertState
    labels: dict[str, str]
    annotations: dict[str, str]
    active_since: float  # when the condition became true (pending began)
    ts: float  # evaluation time of this snapshot
    value: float = 0.0
    fired_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AlertTransition:
    """An alert became firing, or a firing alert resolved, at ``ts``."""

    name: str
    severity: str
    state: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str]
    active_since: float
    ts: float
    value: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Active:
    definition: AlertDef
    labels: dict[str, str]
    active_since: float
    value: float
    firing: bool = False
    fired_at: float | None = None


@dataclass
class _Reader:
    """Queries each metric once per evaluation, over the widest range any rule needs."""

    source: SLISource
    now: float
    lookback: float
    spans: Mapping[str, float]
    defaults: Mapping[str, str] = field(default_factory=dict)
    memo: dict[Any, Any] = field(default_factory=dict)
    _cache: dict[str, list[Series]] = field(default_factory=dict)

    def series(self, name: str) -> list[Series]:
        if name not in self._cache:
            start = self.now - self.spans.get(name, 0.0) - self.lookback
            found = self.source.query(name, start, self.now)
            self._cache[name] = [
                Series(s.name, {**self.defaults, **s.labels}, s.samples) for s in found
            ]
        return self._cache[name]


class AlertEvaluator:
    """Evaluate :func:`alert_defs` of ``spec`` every ``spec.alerts.evaluation_interval``.

    ``profile`` fills the ``profile`` label of series that lack it (the local worker
    metrics may not carry it), so "faults active under prod" works on one machine.
    ``lookback`` is how old the newest sample of a gauge may be. Prometheus looks back
    5 m but also writes staleness markers when a target's series vanish; the SLI store
    has no markers, so a shorter lookback keeps a worker that is gone from alerting.
    """

    def __init__(self, spec: Spec, *, profile: str = "dev", lookback: float = 60.0) -> None:
        self.spec = spec
        self.profile = profile
        self.lookback = lookback
        self.definitions = alert_defs(spec)
        self._active: dict[tuple[int, LabelKey], _Active] = {}
        self._spans: dict[str, float] = {}
        for definition in self.definitions:
            for name, span in definition.condition.metrics().items():
                self._spans[name] = max(self._spans.get(name, 0.0), span)
        self.last_evaluation: float | None = None

    def evaluate(self, source: SLISource, now: float) -> list[AlertTransition]:
        """Run every rule once at ``now``; return what became firing or resolved."""
        reader = _Reader(source, now, self.lookback, self._spans, {"profile": self.profile})
        transitions: list[AlertTransition] = []
        seen: set[tuple[int, LabelKey]] = set()
        for index, definition in enumerate(self.definitions):
            for key, value in definition.condition.evaluate(reader).items():
                ident = (index, key)
                seen.add(ident)
                active = self._active.get(ident)
                if active is None:
                    labels = {
                        "alertname": definition.name,
                        **dict(key),
                        **definition.labels(self.spec.service),
                    }
                    active = self._active[ident] = _Active(definition, labels, now, value)
                active.value = value
                if not active.firing and now - active.active_since >= definition.for_s:
                    active.firing, active.fired_at = True, now
                    transitions.append(self._transition(active, "firing", now))
        for ident in [i for i in self._active if i not in seen]:
            active = self._active.pop(ident)
            if active.firing:
                transitions.append(self._transition(active, "resolved", now))
        self.last_evaluation = now
        return transitions

    def firing(self) -> list[Alert]:
        """Alerts firing as of the last evaluation."""
        return [a for a in self.active() if a.state == "firing"]

    def active(self) -> list[Alert]:
        """Pending and firing alerts as of the last evaluation, most severe first."""
        order = {"critical": 0, "warning": 1, "info": 2}
        alerts = [self._alert(a) for a in self._active.values()]
        return sorted(
            alerts, key=lambda a: (order.get(a.severity, 3), a.name, sorted(a.labels.items()))
        )

    def _alert(self, active: _Active) -> Alert:
        return Alert(
            name=active.definition.name,
            severity=active.definition.severity,
            state="firing" if active.firing else "pending",
            labels=dict(active.labels),
            annotations=self._annotations(active),
            active_since=active.active_since,
            ts=self.last_evaluation if self.last_evaluation is not None else active.active_since,
            value=active.value,
            fired_at=active.fired_at,
        )

    def _transition(
        self, active: _Active, state: Literal["firing", "resolved"], now: float
    ) -> AlertTransition:
        return AlertTransition(
            name=active.definition.name,
            severity=active.definition.severity,
            state=state,
            labels=dict(active.labels),
            annotations=self._annotations(active),
            active_since=active.active_since,
            ts=now,
            value=active.value,
        )

    @staticmethod
    def _annotations(active: _Active) -> dict[str, str]:
        return {
            k: render_template(v, active.labels) for k, v in active.definition.annotations().items()
        }
