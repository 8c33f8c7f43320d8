"""Incidents in the relational store (table ``incidents``; SQLite or PostgreSQL)::

store = SqlIncidentStore(engine)
store.save(incident)
store.get("INC-2026-11-30-001"); store.find(status=[Status.OPEN]); store.ids_of_day("2026-11-30")
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from sqlalchemy import Engine, case, func, insert, select, update

from falcon_platform.errors import NotFoundError
from falcon_platform.incidents.model import Incident, Status
from falcon_platform.stores.schema import incidents, request_log


class SqlIncidentStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def save(self, inc: Incident) -> Incident:
        """Insert or replace ``inc`` (one writer: the supervisor process)."""
        values = {
            "status": inc.status.value,
            "severity": inc.severity.value,
            "title": inc.title[:300],
            "started_at": inc.started_at,
            "detected_at": inc.detected_at,
            "resolved_at": inc.resolved_at,
            "updated_at": time.time(),
            "data": inc.to_dict(),
        }
        with self._engine.begin() as conn:
            done = conn.execute(update(incidents).where(incidents.c.id == inc.id).values(**values))
            if done.rowcount == 0:
                conn.execute(insert(incidents).values(id=inc.id, **values))
        return inc

    def get(self, incident_id: str) -> Incident:
        with self._engine.connect() as conn:
            row = conn.execute(
                select(incidents.c.data).where(incidents.c.id == incident_id)
            ).first()
        if row is None:
            raise NotFoundError(
                f"no incident {incident_id}; `falcon incident list` shows the known ones"
            )
        return Incident.from_dict(dict(row[0]))

    def find(
        self, *, status: Iterable[Status] | None = None, limit: int | None = None
    ) -> list[Incident]:
        """Newest detected first."""
        stmt = select(incidents.c.data).order_by(
            incidents.c.detected_at.desc(), incidents.c.id.desc()
        )
        wanted = [s.value for s in status] if status is not None else None
        if wanted is not None:
            stmt = stmt.where(incidents.c.status.in_(wanted))
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return [Incident.from_dict(dict(r[0])) for r in rows]

    def ids_of_day(self, day: str) -> list[str]:
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(incidents.c.id).where(incidents.c.id.like(f"INC-{day}-%"))
            ).all()
        return [str(r[0]) for r in rows]


def failed_request_share(
    engine: Engine, start: float, end: float, *, min_requests: int = 20
) -> float | None:
    """Share of the request log's requests in [start, end] answered 5xx; None under
    ``min_requests`` (one failed request of one is not a blast radius). The watcher raises
    severities by it."""
    stmt = select(
        func.count(), func.sum(case((request_log.c.status_code >= 500, 1), else_=0))
    ).where(request_log.c.ts >= start, request_log.c.ts <= end)
    with engine.connect() as conn:
        total, failed = conn.execute(stmt).one()
    return float(failed or 0) / total if total >= max(1, min_requests) else None
