"""Releases in the relational store (table ``releases``; SQLite or PostgreSQL, one schema)::

store = ReleaseStore(engine)
store.put(record)                  # insert or replace by id
store.get("r3"); store.list(); store.ids()
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, delete, insert, select

from falcon_platform.releases.record import ReleaseRecord
from falcon_platform.stores.schema import releases


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
        """Every release, oldest (lowest number) first."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(releases.c.record).order_by(releases.c.number)).scalars()
            return [ReleaseRecord.from_dict(r) for r in rows]

    def ids(self) -> list[str]:
        with self._engine.connect() as conn:
            return [str(r) for r in conn.execute(select(releases.c.id)).scalars()]
