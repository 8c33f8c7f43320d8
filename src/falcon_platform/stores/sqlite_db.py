"""The machine's embedded SQLite through the standard library's ``sqlite3``, without SQLAlchemy.

    db = SQLiteDB(settings.data_dir / "falcon.db", timeout_s=5.0, cache_kib=256)
    with db.begin() as conn:                  # one transaction; committed, or rolled back
        conn.exec_driver_sql("INSERT ...", (1, "a"))
    db.dispose()

A serving worker's embedded stores (the request-log shipper, the idempotency keys) send the
same SQL they would send through SQLAlchemy, so they need no more of an engine than this: the
``dialect.name``, ``begin()`` and ``exec_driver_sql`` they call, with the same pragmas as
``stores.database.make_engine`` (WAL, ``synchronous=NORMAL``, busy timeout). SQLAlchemy is
~10 MB a process keeps once imported (docs/CAPACITY_PLAN.md, issue 17 phase 4); the
supervisor, the console and PostgreSQL keep using it. Errors are ``sqlite3.Error``, which
``errors`` names for callers that also handle SQLAlchemy's.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class _Dialect:
    name: str = "sqlite"


def apply_pragmas(conn: Any, timeout_s: float, cache_kib: int | None = None) -> None:
    """Falcon's settings on a new SQLite DBAPI connection (here, and SQLAlchemy's engines)."""
    cursor = conn.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
        cursor.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across our crashes
        cursor.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
        if cache_kib is not None:
            cursor.execute(f"PRAGMA cache_size=-{int(cache_kib)}")  # negative: KiB, not pages
    finally:
        cursor.close()


class SQLiteConnection:
    """One transaction's connection (what ``SQLiteDB.begin()`` yields)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.dbapi = conn

    def exec_driver_sql(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        """``params``: one tuple or mapping, or a list of them (``executemany``), as
        SQLAlchemy's ``exec_driver_sql`` takes them."""
        if isinstance(params, list):
            return self.dbapi.executemany(sql, params)
        return self.dbapi.execute(sql, params)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return self.dbapi.execute(sql, params).fetchall()


class SQLiteDB:
    """One connection to one SQLite file, used by one thread at a time (a lock serialises
    callers; the shipper and the idempotency store each have their own)."""

    dialect = _Dialect()
    errors: tuple[type[Exception], ...] = (sqlite3.Error,)

    def __init__(self, path: Path | str, *, timeout_s: float, cache_kib: int | None = None) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        self.timeout_s = timeout_s
        self.cache_kib = cache_kib
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: no implicit transactions; begin() opens and closes its own.
            conn = sqlite3.connect(
                self.path, timeout=self.timeout_s, isolation_level=None, check_same_thread=False
            )
            try:
                apply_pragmas(conn, self.timeout_s, self.cache_kib)
            except sqlite3.Error:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    @contextmanager
    def begin(self) -> Iterator[SQLiteConnection]:
        """A transaction: committed when the block ends, rolled back if it raises."""
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN")
            try:
                yield SQLiteConnection(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # also a COMMIT that failed (busy): never left open
                    with suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise

    connect = begin  # a read is a transaction too (SQLite's own locking decides)

    def dispose(self) -> None:
        """Close the connection; never waits: a transaction still running in another thread (a
        shipper past its stop deadline) keeps it, and it closes with the process, as
        SQLAlchemy's ``dispose`` leaves a checked-out connection alone."""
        if not self._lock.acquire(blocking=False):
            return
        try:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        finally:
            self._lock.release()
