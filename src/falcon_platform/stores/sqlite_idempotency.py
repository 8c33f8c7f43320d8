"""Idempotency keys in the machine's SQLite database (WAL), shared by every worker process.

    store = SQLiteIdempotencyStore(SQLiteDB(path, timeout_s=1.0), ttl_s=86_400)
    stored = await store.put("key-1", StoredResponse(body_hash, 200, body, created_at=now))
    # ``stored`` is what the database holds now: ours, or the one another worker put first.
    await store.get("key-1")   # None after the TTL

``put`` is insert-if-absent (``INSERT ... ON CONFLICT DO NOTHING`` then read back), so two
workers racing on one key both return the same, first, response. Calls run on one
dedicated thread so the event loop never waits on SQLite's file lock. It never raises:
on a database error ``get`` answers None and ``put`` answers the caller's response, and
the "sqlite" breaker shows the store degraded. Plain SQL through sqlite3 (``SQLiteDB``), so
a serving worker does not import SQLAlchemy (the table is ``stores.schema.idempotency_keys``).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from falcon_platform.stores.base import StoredResponse
from falcon_platform.stores.breaker import CircuitBreaker
from falcon_platform.stores.sqlite_db import SQLiteDB

logger = logging.getLogger("falcon.stores.idempotency")

T = TypeVar("T")
PURGE_EVERY = 1000  # puts between sweeps of expired keys (bounded work, off the hot path)

_COLUMNS = "key, body_hash, status_code, body, created_at, expires_at"
_GET = f"SELECT {_COLUMNS} FROM idempotency_keys WHERE key = ? AND expires_at > ?"  # noqa: S608
_GET_ANY = f"SELECT {_COLUMNS} FROM idempotency_keys WHERE key = ?"  # noqa: S608
_DROP_EXPIRED_KEY = "DELETE FROM idempotency_keys WHERE key = ? AND expires_at <= ?"
_PUT = (
    f"INSERT INTO idempotency_keys ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) "  # noqa: S608
    "ON CONFLICT (key) DO NOTHING"
)
_PURGE = "DELETE FROM idempotency_keys WHERE expires_at <= ?"


class SQLiteIdempotencyStore:
    backend = "sqlite"

    def __init__(
        self,
        engine: SQLiteDB,
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
        except sqlite3.Error as exc:
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
            rows = conn.rows(_GET, (key, self._now()))
        return _to_response(rows[0]) if rows else None

    def put_sync(self, key: str, response: StoredResponse) -> StoredResponse:
        now = self._now()
        with self.engine.begin() as conn:
            conn.exec_driver_sql(_DROP_EXPIRED_KEY, (key, now))
            conn.exec_driver_sql(
                _PUT,
                (key, response.body_hash, response.status_code, response.body,
                 response.created_at, now + self.ttl_s),
            )  # fmt: skip
            (row,) = conn.rows(_GET_ANY, (key,))
            self._puts += 1
            if self._puts % PURGE_EVERY == 0:
                conn.exec_driver_sql(_PURGE, (now,))
        return _to_response(row)

    def purge_expired(self) -> int:
        """Delete expired keys now; returns how many (``falcon db`` maintenance, tests)."""
        with self.engine.begin() as conn:
            return conn.exec_driver_sql(_PURGE, (self._now(),)).rowcount

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.engine.dispose()

    def describe(self) -> dict[str, Any]:
        return {"database": self.engine.url, "ttl_s": self.ttl_s}


def _to_response(row: tuple[Any, ...]) -> StoredResponse:
    _key, body_hash, status_code, body, created_at, _expires_at = row
    return StoredResponse(
        body_hash=body_hash, status_code=status_code, body=bytes(body), created_at=created_at
    )
