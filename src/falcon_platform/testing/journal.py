"""An in-memory event journal for pure-logic tests (same protocol as ``runtime.journal``)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from falcon_platform.events.journal import Event, filter_events


class FakeEventJournal:
    """Keeps events in a list; ``events`` is there for assertions::

    journal = FakeEventJournal()
    journal.record("alert_firing", details={"alert": "FalconHighErrorRate"})
    assert [e.kind for e in journal.events] == ["alert_firing"]
    """

    def __init__(self) -> None:
        self.events: list[Event] = []

    def record(
        self,
        kind: str,
        *,
        release: str | None = None,
        worker: str | None = None,
        details: Mapping[str, Any] | None = None,
        ts: float | None = None,
    ) -> Event:
        event = Event(
            round(time.time() if ts is None else ts, 3),
            str(kind),
            release,
            worker,
            dict(details or {}),
            len(self.events) + 1,
        )
        self.events.append(event)
        return event

    def query(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        kinds: Iterable[str] | None = None,
        release: str | None = None,
        worker: str | None = None,
        limit: int | None = None,
    ) -> list[Event]:
        found = filter_events(
            sorted(self.events, key=lambda e: (e.ts, e.id or 0)),
            since=since,
            until=until,
            kinds=kinds,
            release=release,
            worker=worker,
        )
        return found[-limit:] if limit is not None else found
