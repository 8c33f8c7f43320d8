"""One aborted rollout, one incident: FalconCanaryAborted only attaches to the incident its
``rollout_aborted`` event opened (real SQLite journal and store, the real watcher)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine

from falcon_platform.config.spec import IncidentSpec
from falcon_platform.events.journal import SqlEventJournal
from falcon_platform.incidents.model import Action, Status
from falcon_platform.incidents.service import IncidentService
from falcon_platform.incidents.signals import signals_from_event
from falcon_platform.incidents.store import SqlIncidentStore
from falcon_platform.incidents.watcher import IncidentWatcher
from falcon_platform.stores.schema import metadata

T0 = 1_796_000_000.0


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'falcon.db'}")
    metadata.create_all(engine)
    yield engine
    engine.dispose()


def _setup(engine: Engine) -> tuple[SqlEventJournal, IncidentService, IncidentWatcher]:
    journal = SqlEventJournal(engine)
    spec = IncidentSpec()
    service = IncidentService(SqlIncidentStore(engine), journal, spec, clock=lambda: T0 + 3600)
    watcher = IncidentWatcher(service, journal, spec, since=T0 - 1, workers_total=lambda: 3)
    return journal, service, watcher


def _abort(journal: SqlEventJournal, release: str, ts: float, **details: Any) -> None:
    """What releases.rollout journals on an abort: rollout_aborted, then rollback_finished."""
    journal.record(
        "rollout_aborted",
        release=release,
        ts=ts,
        details={"reason": "canary analysis failed: error ratio 0.21", "cause": "analysis",
                 "from_release": "r1", "to_release": release, **details},
    )  # fmt: skip
    journal.record(
        "rollback_finished",
        release="r1",
        ts=ts + 0.01,
        details={"from_release": release, "to_release": "r1", "automatic": True},
    )


def _alert(journal: SqlEventJournal, kind: str, release: str, ts: float) -> None:
    journal.record(
        kind,
        release=release,
        ts=ts,
        details={
            "name": "FalconCanaryAborted",
            "severity": "critical",
            "state": kind.removeprefix("alert_"),
            "labels": {"alertname": "FalconCanaryAborted", "release": release,
                       "reason": "analysis", "severity": "critical", "service": "falcon"},
            "annotations": {"summary": f"Rollout of release {release} aborted (analysis)"},
            "active_since": ts,
        },
    )  # fmt: skip


def test_the_abort_and_its_alert_make_exactly_one_incident_mitigated_at_the_rollback(
    engine: Engine,
) -> None:
    journal, service, watcher = _setup(engine)
    _abort(journal, "r2", T0)
    watcher.tick(T0 + 1)
    _alert(journal, "alert_firing", "r2", T0 + 4)  # the next evaluation sees the counter
    watcher.tick(T0 + 5)
    _alert(journal, "alert_resolved", "r2", T0 + 905)  # the window has passed
    watcher.tick(T0 + 906)

    (inc,) = service.store.find()
    assert inc.status is Status.MITIGATED
    assert inc.mitigated_at == T0 + 0.01  # the rollback, not the end of the alert's window
    assert inc.reopened == 0
    assert [t.key for t in inc.triggers] == ["rollout_aborted:r2"]
    assert inc.alerts == ("FalconCanaryAborted",)
    assert inc.releases == ("r2",)
    assert inc.title == (
        "Rollout of release r2 aborted by canary analysis: canary analysis failed: error ratio 0.21"
    )
    kinds = [e.kind for e in journal.query(since=0) if e.kind.startswith("incident_")]
    assert kinds == ["incident_opened", "incident_mitigated"]


def test_the_alert_after_a_human_resolved_the_incident_opens_nothing(engine: Engine) -> None:
    journal, service, watcher = _setup(engine)
    _abort(journal, "r2", T0)
    watcher.tick(T0 + 1)
    (inc,) = service.store.find()
    service.act(inc.id, Action.RESOLVE, by="ana")
    _alert(journal, "alert_firing", "r2", T0 + 4)
    watcher.tick(T0 + 5)
    (only,) = service.store.find()
    assert only.id == inc.id
    assert only.status is Status.RESOLVED


def test_the_alert_alone_opens_nothing_and_does_not_pull_a_later_incident_start(
    engine: Engine,
) -> None:
    """Without its event (auto-open was off then, say) the echo has nothing to attach to; and a
    later, unrelated incident does not start at the alert's active_since."""
    journal, service, watcher = _setup(engine)
    _alert(journal, "alert_firing", "r2", T0)
    watcher.tick(T0 + 1)
    assert service.store.find() == []
    journal.record("crash_loop_entered", release="r1", ts=T0 + 60, details={})
    watcher.tick(T0 + 61)
    (inc,) = service.store.find()
    assert inc.started_at == T0 + 60
    assert inc.alerts == ()


def test_a_manual_abort_is_not_titled_as_the_canary_analysis() -> None:
    from falcon_platform.events.journal import Event

    event = Event(
        ts=T0,
        kind="rollout_aborted",
        release="r3",
        worker=None,
        details={"reason": "aborted by hand: pager", "cause": "manual"},
    )
    (signal,) = signals_from_event(event)
    assert signal.title == "Rollout of release r3 aborted: aborted by hand: pager"
    assert signal.key == "rollout_aborted:r3"
