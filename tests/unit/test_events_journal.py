"""The event journal (SQLite through SQLAlchemy) and its in-memory fake behave alike."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine

from falcon_platform.events.journal import (
    BufferedJournal,
    Event,
    EventKind,
    SqlEventJournal,
    format_ts,
    parse_since,
)
from falcon_platform.stores.schema import metadata
from falcon_platform.testing.journal import FakeEventJournal


@pytest.fixture(params=["sql", "fake"])
def journal(request: pytest.FixtureRequest, tmp_path: Path) -> SqlEventJournal | FakeEventJournal:
    if request.param == "fake":
        return FakeEventJournal()
    engine = create_engine(f"sqlite:///{tmp_path / 'j.db'}")
    metadata.create_all(engine)
    return SqlEventJournal(engine)


def test_record_and_query_filters(journal: SqlEventJournal | FakeEventJournal) -> None:
    """Events come back oldest first, filtered by time, kind, release, worker; ms precision kept."""
    journal.record(
        EventKind.WORKER_STARTED, release="r1", worker="w1", details={"pid": 1}, ts=1000.0001
    )
    journal.record(
        EventKind.WORKER_EXITED,
        release="r1",
        worker="w1",
        details={"exit_code": 137, "oom_killed": True},
        ts=1001.2345,
    )
    journal.record(EventKind.WORKER_STARTED, release="r2", worker="w2", ts=1002.5)
    everything = journal.query()
    assert [e.kind for e in everything] == ["worker_started", "worker_exited", "worker_started"]
    exited = journal.query(kinds=[EventKind.WORKER_EXITED])
    assert len(exited) == 1
    assert exited[0].details == {"exit_code": 137, "oom_killed": True}
    assert exited[0].ts == pytest.approx(1001.235, abs=1e-9)
    assert [e.worker for e in journal.query(since=1001.0)] == ["w1", "w2"]
    assert [e.release for e in journal.query(release="r2")] == ["r2"]
    assert [e.kind for e in journal.query(limit=1)] == ["worker_started"]
    assert journal.query(limit=2)[0].kind == "worker_exited"  # newest two, oldest first


def test_iso_timestamps_are_utc_with_milliseconds() -> None:
    assert format_ts(1767225600.1234) == "2026-01-01T00:00:00.123Z"


def test_parse_since_accepts_durations_and_iso() -> None:
    """`--since 10m` counts back from now; ISO times without a zone are UTC."""
    now = 1767225600.0
    assert parse_since("10m", now) == now - 600
    assert parse_since("2026-01-01T00:00:00Z", now) == now
    assert parse_since("2026-01-01T00:00:00", now) == now
    with pytest.raises(ValueError, match="neither a duration"):
        parse_since("yesterday", now)


class _FlakyJournal(FakeEventJournal):
    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def record(self, kind: str, **kwargs: object) -> Event:  # type: ignore[override]
        if self.down:
            raise OSError("database unreachable")
        return super().record(kind, **kwargs)  # type: ignore[arg-type]


def test_buffered_journal_survives_store_outage_and_keeps_order() -> None:
    """A failing store never raises into the supervisor; buffered events land later, in order,
    with their original timestamps, and are visible to queries meanwhile."""
    store = _FlakyJournal()
    journal = BufferedJournal(store, retry_after_s=0.0)
    journal.record("worker_started", worker="w1", ts=1.0)
    store.down = True
    journal.record("worker_exited", worker="w1", details={"exit_code": 137}, ts=2.0)
    journal.record("restart_scheduled", worker="w1", ts=3.0)
    assert journal.pending == 2
    assert [e.kind for e in journal.query()] == [
        "worker_started",
        "worker_exited",
        "restart_scheduled",
    ]
    store.down = False
    journal.record("worker_ready", worker="w1", ts=4.0)
    assert journal.pending == 0
    assert [(e.kind, e.ts) for e in store.events] == [
        ("worker_started", 1.0),
        ("worker_exited", 2.0),
        ("restart_scheduled", 3.0),
        ("worker_ready", 4.0),
    ]
