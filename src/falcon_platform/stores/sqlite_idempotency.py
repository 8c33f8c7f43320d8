"""Idempotency keys in the machine's SQLite database (WAL), shared by every worker process.

    store = SQLiteIdempotencyStore(engine, ttl_s=86_400)
    stored = await store.put("key-1", StoredResponse(body_hash, 200, body, created_at=now))
    # ``stored`` is what the database holds now: ours, or the one another worker put first.
    await store.get("key-1")   # None after the TTL

``put`` is insert-if-absent (``INSERT ... ON CONFLICT DO NOTHING`` then read back), so two
workers racing on one key both return the same, first, response. Calls run on one
dedicated thread so the event loop never waits on SQLite's file lock. It never raises:
on a database error ``get`` answers None and ``put`` answers the caller's response, and
the "sqlite" breaker shows the store degraded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Engine, delete, select
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.exc import SQLAlchemyError

from falcon_platform.stores.base import StoredResponse
from falcon_platform.stores.breaker import CircuitBreaker
from falcon_platform.stores.schema import idempotency_keys as table

logger = logging.getLogger("falcon.stores.idempotency")

T = TypeVar("T")
PURGE_EVERY = 1000  # puts between sweeps of expired keys (bounded work, off the hot path)


class SQLiteIdempotencyStore:
    backend = "sqlite"

    def __init__(
        self,
        engine: Engine,
        *,
        ttl_s: float,
        breaker: CircuitBreaker | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.ttl_s = ttl_s
        self.breaker = breaker or CircuitBreaker("sqlite")
        self.dependency = self.breaker.name
        self._now = now
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="falcon-idem")
        self._puts = 0

    async def _run(self, fn: Callable[[], T], fallback: T) -> T:
        if not self.breaker.allow():
            return fallback
        try:
            result = await asyncio.get_running_loop().run_in_executor(self._executor, fn)
        except SQLAlchemyError as exc:
            self.breaker.record_failure(exc)
            logger.warning(
                "idempotency store (sqlite) failed: %s",
                exc,
                extra={"fields": {"event": "idempotency_store_error", "dependency": "sqlite"}},
            )
            return fallback
        self.breaker.record_success()
        return result

    async def get(self, key: str) -> StoredResponse | None:
        return await self._run(lambda: self.get_sync(key), None)

    async def put(self, key: str, response: StoredResponse) -> StoredResponse:
        return await self._run(lambda: self.put_sync(key, response), response)

    def get_sync(self, key: str) -> StoredResponse | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(table).where(table.c.key == key, table.c.expires_at > self._now())
            ).first()
        return _to_response(row._mapping) if row is not None else None

    def put_sync(self, key: str, response: StoredResponse) -> StoredResponse:
        now = self._now()
        with self.engine.begin() as conn:
            conn.execute(delete(table).where(table.c.key == key, table.c.expires_at <= now))
            conn.execute(
                insert(table)
                .values(
                    key=key,
                    body_hash=response.body_hash,
                    status_code=response.status_code,
                    body=response.body,
                    created_at=response.created_at,
                    expires_at=now + self.ttl_s,
                )
                .on_conflict_do_nothing(index_elements=["key"])
            )
            row = conn.execute(select(table).where(table.c.key == key)).one()
            self._puts += 1
            if self._puts % PURGE_EVERY == 0:
                conn.execute(delete(table).where(table.c.expires_at <= now))
        return _to_response(row._mapping)

    def purge_expired(self) -> int:
        """Delete expired keys now; returns how many (``falcon db`` maintenance, tests)."""
        with self.engine.begin() as conn:
            return conn.execute(delete(table).where(table.c.expires_at <= self._now())).rowcount

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.engine.dispose()

    def describe(self) -> dict[str, Any]:
        return {"database": str(self.engine.url), "ttl_s": self.ttl_s}


def _to_response(row: Any) -> StoredResponse:
    return StoredResponse(
        body_hash=row["body_hash"],
        status_code=row["status_code"],
        body=bytes(row["body"]),
        created_at=row["created_at"],
    )
