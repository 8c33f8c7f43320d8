"""The incident watcher over a real SQLite journal and store: opens from journal events,
dedupes, escalates by blast radius, mitigates when triggers clear, journals each step."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine

from falcon_platform.config.spec import IncidentSpec
from falcon_platform.events.journal import SqlEventJournal
from falcon_platform.incidents.model import Action, InvalidTransitionError, Severity, Status
from falcon_platform.incidents.service import IncidentService
from falcon_platform.incidents.store import SqlIncidentStore
from falcon_platform.incidents.watcher import IncidentWatcher
from falcon_platform.stores.schema import metadata

T0 = 1_796_000_000.0  # 2026-11-30 ~ UTC


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'falcon.db'}")
    metadata.create_all(engine)
    yield engine
    engine.dispose()


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def _setup(
    engine: Engine, **policy: object
) -> tuple[SqlEventJournal, IncidentService, IncidentWatcher, Clock]:
    journal = SqlEventJournal(engine)
    clock = Clock()
    spec = IncidentSpec(**policy)  # type: ignore[arg-type]
    service = IncidentService(SqlIncidentStore(engine), journal, spec, clock=clock)
    watcher = IncidentWatcher(service, journal, spec, since=T0 - 1, workers_total=lambda: 4)
    return journal, service, watcher, clock


def _kinds(journal: SqlEventJournal) -> list[str]:
    return [e.kind for e in journal.query(since=0) if e.kind.startswith("incident_")]


def test_crash_loop_opens_once_escalates_and_mitigates(engine: Engine) -> None:
    journal, service, watcher, clock = _setup(engine)
    for i, w in enumerate(["w1", "w2"]):
        journal.record(
            "worker_exited",
            release="r2",
            worker=w,
            ts=T0 + i,
            details={"reason": "Error", "exit_code": 1},
        )
    journal.record("crash_loop_entered", release="r2", ts=T0 + 5, details={"restarts_in_window": 5})
    clock.now = T0 + 6
    (inc,) = {i.id: i for i in watcher.tick(T0 + 6)}.values()
    assert inc.id.startswith("INC-")
    assert inc.status is Status.OPEN
    assert inc.started_at == T0  # the first abnormal exit, not the crash-loop event
    assert inc.detected_at == T0 + 5
    # 2 of 4 workers died: P1 (the crash loop's own) stays P1; half the workers is P1 too.
    assert inc.severity is Severity.P1
    # A critical alert while it is open joins it; nothing new opens; re-reading is idempotent.
    journal.record(
        "alert_firing",
        release="r2",
        ts=T0 + 20,
        details={
            "name": "FalconHighErrorRate",
            "severity": "critical",
            "labels": {},
            "active_since": T0 + 3,
        },
    )
    for w in ("w3", "w4"):
        journal.record(
            "worker_exited", release="r2", worker=w, ts=T0 + 21, details={"reason": "Signaled"}
        )
    clock.now = T0 + 22
    watcher.tick(T0 + 22)
    watcher.tick(T0 + 23)
    (only,) = service.store.find()
    assert [t.key for t in only.triggers] == ["crash_loop:r2", "alert:FalconHighErrorRate{}"]
    assert only.severity is Severity.P0  # every worker died
    # Triggers clear one by one; mitigated at the last clear, by Falcon, journaled.
    journal.record("crash_loop_left", release="r2", ts=T0 + 60)
    watcher.tick(T0 + 61)
    assert service.store.get(only.id).status is Status.OPEN
    journal.record(
        "alert_resolved",
        release="r2",
        ts=T0 + 90,
        details={"name": "FalconHighErrorRate", "labels": {}},
    )
    watcher.tick(T0 + 91)
    done = service.store.get(only.id)
    assert (done.status, done.mitigated_at) == (Status.MITIGATED, T0 + 90)
    assert _kinds(journal) == [
        "incident_opened",
        "incident_joined",
        "incident_severity_changed",
        "incident_mitigated",
    ]
    mitigated = journal.query(kinds=["incident_mitigated"])[0]
    assert mitigated.details["incident"] == only.id
    assert mitigated.details["automatic"] is True
    # A human resolves; resolving twice is refused by the transition table.
    clock.now = T0 + 300
    resolved = service.act(only.id, Action.RESOLVE, by="alice", text="rolled back")
    assert (resolved.status, resolved.resolved_at, resolved.resolved_by) == (
        Status.RESOLVED,
        T0 + 300,
        "alice",
    )
    with pytest.raises(InvalidTransitionError):
        service.act(only.id, Action.RESOLVE, by="alice")


def test_oom_burst_opens_and_clears_after_its_window(engine: Engine) -> None:
    journal, service, watcher, _ = _setup(engine, oom_burst_kills=2, oom_burst_window=60)
    journal.record(
        "worker_exited", worker="w1", ts=T0, details={"oom_killed": True, "reason": "OOMKilled"}
    )
    assert watcher.tick(T0 + 1) == []  # one kill is not a burst
    journal.record(
        "worker_exited",
        worker="w2",
        ts=T0 + 10,
        details={"oom_killed": True, "reason": "OOMKilled"},
    )
    changed = watcher.tick(T0 + 11)
    assert changed
    assert changed[-1].trigger("oom_burst") is not None
    assert changed[-1].started_at == T0
    watcher.tick(T0 + 50)
    assert service.store.find()[0].status is Status.OPEN
    watcher.tick(T0 + 71)  # the first kill left the 60 s window
    assert service.store.find()[0].status is Status.MITIGATED


def test_auto_open_off_opens_nothing(engine: Engine) -> None:
    journal, service, watcher, _ = _setup(engine, auto_open=False)
    journal.record("crash_loop_entered", release="r1", ts=T0)
    journal.record(
        "alert_firing", ts=T0, details={"name": "X", "severity": "critical", "labels": {}}
    )
    watcher.tick(T0 + 1)
    assert service.store.find() == []


def test_warning_alerts_open_nothing(engine: Engine) -> None:
    journal2, service2, watcher2, _ = _setup(engine)
    journal2.record(
        "alert_firing", ts=T0 + 2, details={"name": "W", "severity": "warning", "labels": {}}
    )
    watcher2.tick(T0 + 3)
    assert service2.store.find() == []


def test_manual_incident_numbering_and_notes(engine: Engine) -> None:
    journal, service, _, clock = _setup(engine)
    first = service.open_manual("latency is odd", by="bob", severity=Severity.P3, tags=["latency"])
    second = service.open_manual("another", by="bob")
    assert first.id.endswith("-001")
    assert second.id.endswith("-002")
    assert first.id[4:14] == "2026-11-30"
    clock.now = T0 + 30
    noted = service.act(first.id, Action.NOTE, by="carol", text="p99 doubled after r3")
    assert noted.notes[-1].author == "carol"
    note = journal.query(kinds=["incident_note"])[0]
    assert note.details["text"] == "p99 doubled after r3"
    assert note.ts == T0 + 30


def test_no_ready_worker_at_start_up_is_not_an_outage(engine: Engine) -> None:
    """503s before any worker was ever ready (start-up) open nothing; after one was, P0."""
    journal, service, watcher, _ = _setup(engine)
    journal.record("service_unavailable", ts=T0, details={"why": "workers are starting"})
    journal.record("service_available", ts=T0 + 5)
    journal.record("worker_ready", worker="w1", ts=T0 + 5)
    watcher.tick(T0 + 6)
    assert service.store.find() == []
    journal.record("service_unavailable", ts=T0 + 60, details={"no_ready_for_s": 30})
    watcher.tick(T0 + 61)
    (inc,) = service.store.find()
    assert (inc.severity, inc.started_at) == (Severity.P0, T0 + 30)
    journal.record("service_available", ts=T0 + 90)
    watcher.tick(T0 + 91)
    assert service.store.get(inc.id).mitigated_at == T0 + 90


def test_gauges_count_open_incidents_and_overdue_action_items(engine: Engine) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from falcon_platform.incidents.actions import ActionStatus, SqlActionStore

    journal, _, _, clock = _setup(engine)
    service = IncidentService(
        SqlIncidentStore(engine),
        journal,
        IncidentSpec(),
        actions=SqlActionStore(engine),
        clock=clock,
    )
    registry = CollectorRegistry()
    service.bind_metrics(registry)
    inc = service.open_manual("slow", by="bob", severity=Severity.P1)
    service.open_manual("other", by="bob", severity=Severity.P1)
    service.add_action(
        inc.id, category="Detect", description="d", owner="@o", due="2026-11-29"
    )  # T0 is 2026-11-30: overdue
    done = service.add_action(
        inc.id, category="Detect", description="d", owner="@o", due="2026-01-01"
    )
    service.advance_action(done.id, ActionStatus.DONE, by="bob")
    service.refresh_metrics()
    text = generate_latest(registry).decode()
    assert 'falcon_incidents_open{severity="P1"} 2.0' in text
    assert 'falcon_incidents_open{severity="P0"} 0.0' in text
    assert "falcon_action_items_overdue 1.0" in text


def test_a_new_supervisor_forgets_the_triggers_of_the_last_one(engine: Engine) -> None:
    """A crash loop left active by a supervisor that died would never clear: the next one
    clears it at start (mitigating), and the fault firing again reopens the incident."""
    journal, service, watcher, clock = _setup(engine)
    journal.record("crash_loop_entered", release="r2", ts=T0)
    watcher.tick(T0 + 1)
    (inc,) = service.store.find()
    manual = service.open_manual("by hand", by="bob")
    clock.now = T0 + 100
    service.forget_triggers(T0 + 100, why="the supervisor (re)started")
    assert service.store.get(inc.id).status is Status.MITIGATED
    assert service.store.get(inc.id).mitigated_at == T0 + 100
    assert service.store.get(manual.id).status is Status.OPEN  # a human's stays open
    service.act(manual.id, Action.RESOLVE, by="bob")
    _, _, fresh, _ = _setup(engine)
    fresh.cursor = T0 + 150
    journal.record("crash_loop_entered", release="r2", ts=T0 + 200)
    fresh.tick(T0 + 201)
    back = service.store.get(inc.id)
    assert (back.status, back.reopened) == (Status.OPEN, 1)


def test_failed_request_share_raises_the_severity(engine: Engine) -> None:
    """An OOM burst (P2) during which 7 of 61 requests (11.5%) fail is a P1 (>= 5%, < 50%):
    the share comes from the request log since the incident's start, re-scored every
    rescore_every_s, and only once there are enough requests to judge."""
    from sqlalchemy import insert

    from falcon_platform.incidents.store import failed_request_share
    from falcon_platform.stores.schema import request_log

    rows = [
        {"request_id": f"q{i}", "ts": T0 + i * 0.1, "worker": "w1", "release": "r1",
         "model_version": "m", "endpoint": "/infer", "status_code": 503 if i % 10 == 0 else 200,
         "latency_ms": 1.0, "cache_hit": False, "idempotency_hit": False}
        for i in range(100)
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(request_log), rows)
    assert failed_request_share(engine, T0, T0 + 10) == 0.1
    assert failed_request_share(engine, T0 + 100, T0 + 200) is None
    assert failed_request_share(engine, T0, T0) is None  # 1 request: too few to judge
    journal, service, _, clock = _setup(engine, oom_burst_kills=2)
    watcher = IncidentWatcher(
        service,
        journal,
        IncidentSpec(oom_burst_kills=2),
        since=T0 - 1,
        workers_total=lambda: 10,
        failed_share=lambda start, end: failed_request_share(engine, start, end),
        rescore_every_s=5,
    )
    for w in ("w1", "w2"):
        journal.record(
            "worker_exited", worker=w, ts=T0, details={"oom_killed": True, "reason": "OOMKilled"}
        )
    clock.now = T0 + 1
    watcher.tick(T0 + 1)
    (inc,) = service.store.find()
    assert inc.severity is Severity.P2  # 2 of 10 workers; too few requests yet
    clock.now = T0 + 6
    watcher.tick(T0 + 6)
    assert service.store.get(inc.id).severity is Severity.P1
    changed = journal.query(kinds=["incident_severity_changed"])
    assert "11.5% of requests failed" in changed[-1].details["why"]
