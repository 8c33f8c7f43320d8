"""Releases in the relational store (table ``releases``; SQLite or PostgreSQL, one schema)::

store = ReleaseStore(engine)
store.put(record)                  # insert or replace by id
store.get("r3"); store.list(); store.ids()
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Engine, delete, insert, select

from falcon_platform.releases.record import ReleaseRecord
from falcon_platform.stores.schema import releases

log = logging.getLogger("falcon.releases")


class ReleaseStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def put(self, record: ReleaseRecord) -> None:
        """Write the record (replacing the row with its id) in one transaction."""
        body = record.to_dict()
        row: dict[str, Any] = {
            "id": record.id,
            "number": record.number,
            "created_at": record.created_at,
            "updated_at": record.updated_at or record.created_at,
            "created_by": record.created_by[:128],
            "reason": record.reason,
            "state": str(record.state),
            "model_sha256": record.model_sha256,
            "settings_fingerprint": record.settings_fingerprint,
            "spec_hash": record.spec_hash,
            "record": body,
        }
        with self._engine.begin() as conn:
            conn.execute(delete(releases).where(releases.c.id == record.id))
            conn.execute(insert(releases).values(**row))

    def get(self, release_id: str) -> ReleaseRecord | None:
        with self._engine.connect() as conn:
            row = conn.execute(
                select(releases.c.record).where(releases.c.id == release_id)
            ).scalar_one_or_none()
        return ReleaseRecord.from_dict(row) if row is not None else None

    def all(self) -> list[ReleaseRecord]:
        """Every release this version can read, oldest (lowest number) first. A record it
        cannot (written by another version of Falcon) is left out with a warning: one row
        must not hide the whole history (``unreadable`` names them)."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(releases.c.id, releases.c.record).order_by(releases.c.number)
            ).all()
        records: list[ReleaseRecord] = []
        for release_id, body in rows:
            try:
                records.append(ReleaseRecord.from_dict(body))
            except (TypeError, ValueError, KeyError, AttributeError) as exc:
                log.warning("release %s: its record cannot be read (%s)", release_id, exc)
        return records

    def unreadable(self) -> dict[str, str]:
        """id -> state (its column) of each record ``all`` leaves out."""
        readable = {r.id for r in self.all()}
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(releases.c.id, releases.c.state).order_by(releases.c.number)
            ).all()
        return {str(i): str(state) for i, state in rows if i not in readable}

    def ids(self) -> list[str]:
        with self._engine.connect() as conn:
            return [str(r) for r in conn.execute(select(releases.c.id)).scalars()]
