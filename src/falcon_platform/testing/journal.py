"""An in-memory event journal for pure-logic tests (same protocol as ``runtime.journal``)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from falcon_platform.runtime.journal import Event


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
        kind_set = {str(k) for k in kinds} if kinds is not None else None
        found = [
            e
            for e in sorted(self.events, key=lambda e: (e.ts, e.id or 0))
            if (since is None or e.ts >= since)
            and (until is None or e.ts <= until)
            and (not kind_set or e.kind in kind_set)
            and (release is None or e.release == release)
            and (worker is None or e.worker == worker)
        ]
        return found[-limit:] if limit is not None else found
