"""The event journal: one row per thing that happened to the runtime (table ``events``).

Incidents and postmortems are built from these rows, so every row carries a UTC
timestamp with millisecond precision, a kind from :class:`EventKind`, and the
release/worker it concerns. Use::

    journal = SqlEventJournal(engine)
    journal.record(EventKind.WORKER_EXITED, release="r1", worker="w2",
                   details={"exit_code": 137, "oom_killed": True, "peak_rss_bytes": 540_000_000})
    for event in journal.query(since=time.time() - 600, kinds=[EventKind.WORKER_EXITED]):
        print(event.iso_ts, event.kind, event.details)

``falcon_platform.testing.journal.FakeEventJournal`` implements the same protocol in memory.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import Engine, insert, select

from falcon_platform.stores.schema import events


class EventKind(StrEnum):
    """Every kind of journal row. Other parts may journal their own kinds as plain strings."""

    SUPERVISOR_STARTED = "supervisor_started"
    SUPERVISOR_STOPPED = "supervisor_stopped"
    SUPERVISOR_UNCLEAN_SHUTDOWN = "supervisor_unclean_shutdown"  # found at the next start
    SETTINGS_FINGERPRINT = "settings_fingerprint"
    CONFIG_CHANGED = "config_changed"
    GATE_OVERRIDE = "gate_override"
    GATE_REFUSED = "gate_refused"  # workers not started: their settings fail the gate
    WORKER_STARTED = "worker_started"
    WORKER_READY = "worker_ready"
    WORKER_EXITED = "worker_exited"
    WORKER_BOOT_FAILED = "worker_boot_failed"
    WORKER_GAVE_UP = "worker_gave_up"
    RESTART_SCHEDULED = "restart_scheduled"
    CRASH_LOOP_ENTERED = "crash_loop_entered"
    CRASH_LOOP_LEFT = "crash_loop_left"
    LIMIT_RECYCLE = "limit_recycle"
    LIVENESS_KILL = "liveness_kill"
    LIVENESS_KILL_DEFERRED = "liveness_kill_deferred"
    SERVICE_UNAVAILABLE = "service_unavailable"  # no worker ready: the supervisor answers 503
    SERVICE_AVAILABLE = "service_available"  # a worker is ready again
    DEPLOYMENT_UNBOOTABLE = "deployment_unbootable"  # every worker gave up booting at start
    ROLLING_RESTART_STARTED = "rolling_restart_started"
    ROLLING_RESTART_FINISHED = "rolling_restart_finished"
    ORPHANS_SHIPPED = "orphans_shipped"
    ALERT_FIRING = "alert_firing"
    ALERT_RESOLVED = "alert_resolved"
    # releases (a contract: incidents open on rollout_aborted; drills and the console read
    # them). Event.release = the release id; details carry reason / from_release /
    # to_release / step / verdict as relevant.
    RELEASE_CREATED = "release_created"
    RELEASE_RESTORED = "release_restored"  # a release from before a restart, runnable again
    # at start: the last stable release resumed / not resumed (details: base, reason, line)
    RELEASE_RESUMED = "release_resumed"
    RELEASE_RESUME_REFUSED = "release_resume_refused"
    RELEASE_RESUME_SKIPPED = "release_resume_skipped"  # `falcon up --base`
    GATE_PASSED = "gate_passed"
    GATE_SKIPPED = "gate_skipped"
    ROLLOUT_STARTED = "rollout_started"
    ROLLOUT_STEP = "rollout_step"
    CANARY_ANALYSIS = "canary_analysis"
    CANARY_SYNTHETIC_TRAFFIC = "canary_synthetic_traffic"  # started / stopped, with counts
    ROLLOUT_PROMOTED = "rollout_promoted"
    ROLLOUT_ABORTED = "rollout_aborted"
    ROLLBACK_STARTED = "rollback_started"
    ROLLBACK_FINISHED = "rollback_finished"
    DRILL = "drill"  # a failure drill's outcome (falcon drill run)
    # --- incidents (issue 15); details always carry "incident": the id -----------------
    INCIDENT_OPENED = "incident_opened"
    INCIDENT_JOINED = "incident_joined"  # another signal joined the open incident
    INCIDENT_REOPENED = "incident_reopened"
    INCIDENT_ACKNOWLEDGED = "incident_acknowledged"
    INCIDENT_NOTE = "incident_note"
    INCIDENT_SEVERITY_CHANGED = "incident_severity_changed"
    INCIDENT_MITIGATED = "incident_mitigated"
    INCIDENT_RESOLVED = "incident_resolved"
    ACTION_ITEM_ADDED = "action_item_added"  # details: the item (id, incident, category, ...)
    ACTION_ITEM_UPDATED = "action_item_updated"  # details: id, incident, status


def unknown_kind_message(kind: str) -> str | None:
    """``None`` for a kind of :class:`EventKind`; else why not, the closest kinds and the list."""
    import difflib

    known = sorted(k.value for k in EventKind)
    if kind in known:
        return None
    near = difflib.get_close_matches(kind, known, n=2, cutoff=0.6)
    guess = f"did you mean {' or '.join(near)}? " if near else ""
    return f"no event kind {kind!r}; {guess}kinds: {', '.join(known)}"


def format_ts(ts: float) -> str:
    """Epoch seconds -> ``2026-01-01T00:00:00.123Z`` (UTC, milliseconds)."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Event:
    ts: float  # epoch seconds UTC
    kind: str
    release: str | None = None
    worker: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    id: int | None = None

    @property
    def iso_ts(self) -> str:
        return format_ts(self.ts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ts": round(self.ts, 3),
            "time": self.iso_ts,
            "kind": self.kind,
            "release": self.release,
            "worker": self.worker,
            "details": dict(self.details),
        }


class EventJournal(Protocol):
    """Append-only journal of runtime events."""

    def record(
        self,
        kind: str,
        *,
        release: str | None = None,
        worker: str | None = None,
        details: Mapping[str, Any] | None = None,
        ts: float | None = None,
    ) -> Event:
        """Append one event (``ts`` defaults to now) and return it."""
        ...

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
        """Events in time order (oldest first) matching every filter given."""
        ...


def filter_events(
    found: Iterable[Event],
    *,
    since: float | None = None,
    until: float | None = None,
    kinds: Iterable[str] | None = None,
    release: str | None = None,
    worker: str | None = None,
) -> list[Event]:
    """The events matching every filter given, in the order given (pure; for in-memory
    journals: the buffer of :class:`BufferedJournal` and ``testing.FakeEventJournal``)."""
    kind_set = {str(k) for k in kinds} if kinds is not None else set()
    return [
        e
        for e in found
        if (since is None or e.ts >= since)
        and (until is None or e.ts <= until)
        and (not kind_set or e.kind in kind_set)
        and (release is None or e.release == release)
        and (worker is None or e.worker == worker)
    ]


def _ms(ts: float) -> float:
    # Millisecond precision is the contract; rounding here keeps SQLite and PostgreSQL equal.
    return round(ts, 3)


class SqlEventJournal:
    """The journal in the relational store (SQLite by default, PostgreSQL when configured)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def record(
        self,
        kind: str,
        *,
        release: str | None = None,
        worker: str | None = None,
        details: Mapping[str, Any] | None = None,
        ts: float | None = None,
    ) -> Event:
        when = _ms(time.time() if ts is None else ts)
        payload = dict(details or {})
        with self._engine.begin() as conn:
            result = conn.execute(
                insert(events).values(
                    ts=when, kind=str(kind), release=release, worker=worker, details=payload
                )
            )
            key = result.inserted_primary_key
            row_id = int(key[0]) if key is not None and key[0] is not None else None
        return Event(when, str(kind), release, worker, payload, row_id)

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
        stmt = select(events)
        if since is not None:
            stmt = stmt.where(events.c.ts >= since)
        if until is not None:
            stmt = stmt.where(events.c.ts <= until)
        kind_list = [str(k) for k in kinds] if kinds is not None else None
        if kind_list:
            stmt = stmt.where(events.c.kind.in_(kind_list))
        if release is not None:
            stmt = stmt.where(events.c.release == release)
        if worker is not None:
            stmt = stmt.where(events.c.worker == worker)
        if limit is not None:
            # The newest `limit` rows, returned oldest first.
            stmt = stmt.order_by(events.c.ts.desc(), events.c.id.desc()).limit(limit)
        else:
            stmt = stmt.order_by(events.c.ts, events.c.id)
        with self._engine.connect() as conn:
            rows = conn.execute(stmt).mappings().all()
        found = [
            Event(
                float(r["ts"]),
                r["kind"],
                r["release"],
                r["worker"],
                dict(r["details"] or {}),
                r["id"],
            )
            for r in rows
        ]
        if limit is not None:
            found.reverse()
        return found


def parse_since(text: str, now: float) -> float:
    """``--since`` value -> epoch seconds: a duration back from ``now`` (``10m``, ``2h``, ``90s``)
    or an ISO-8601 time (``2026-01-01T12:00:00Z``; naive means UTC). Raises ValueError."""
    from falcon_platform.config.spec import parse_duration

    value = text.strip()
    try:
        return now - parse_duration(value)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"--since {text!r} is neither a duration (10m, 2h, 90s) nor an ISO time "
            "(2026-01-01T12:00:00Z)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


class BufferedJournal:
    """A journal that never takes the supervisor down: when the store fails, events wait in a
    bounded buffer (oldest dropped first, counted) and are written, in order, once it answers.

    After a failure the store is not tried again for ``retry_after_s``, so an unreachable
    PostgreSQL costs the supervisor loop one timeout per interval, not one per event::

        journal = BufferedJournal(SqlEventJournal(engine))
    """

    def __init__(
        self, inner: EventJournal, *, max_buffer: int = 10_000, retry_after_s: float = 10.0
    ) -> None:
        from collections import deque

        self._inner = inner
        self._buffer: deque[Event] = deque(maxlen=max_buffer)
        self._retry_after_s = retry_after_s
        self._next_try = 0.0
        self.dropped = 0

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def _flush(self) -> None:
        while self._buffer:
            event = self._buffer[0]
            self._inner.record(
                event.kind,
                release=event.release,
                worker=event.worker,
                details=event.details,
                ts=event.ts,
            )
            self._buffer.popleft()

    def record(
        self,
        kind: str,
        *,
        release: str | None = None,
        worker: str | None = None,
        details: Mapping[str, Any] | None = None,
        ts: float | None = None,
    ) -> Event:
        import logging

        event = Event(
            _ms(time.time() if ts is None else ts), str(kind), release, worker, dict(details or {})
        )
        if time.monotonic() >= self._next_try:
            try:
                self._flush()
                return self._inner.record(
                    kind, release=release, worker=worker, details=details, ts=event.ts
                )
            except Exception as exc:  # the journal must not stop the supervisor
                self._next_try = time.monotonic() + self._retry_after_s
                logging.getLogger("falcon.supervisor").error(
                    "event journal unavailable (%s); buffering events in memory", exc
                )
        if len(self._buffer) == self._buffer.maxlen:
            self.dropped += 1
        self._buffer.append(event)
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
        kind_list = list(kinds) if kinds is not None else None
        stored = self._inner.query(
            since=since, until=until, kinds=kind_list, release=release, worker=worker, limit=limit
        )
        waiting = filter_events(
            self._buffer, since=since, until=until, kinds=kind_list, release=release, worker=worker
        )
        found = stored + waiting
        return found[-limit:] if limit is not None else found
