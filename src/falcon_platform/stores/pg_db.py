"""PostgreSQL through psycopg 3 directly, without SQLAlchemy: a serving worker's request-log shipper.

    db = PgDB("postgresql://falcon@db/falcon", timeout_s=5.0, application_name="falcon-w1")
    with db.begin() as conn:                  # one transaction; committed, or rolled back
        conn.exec_driver_sql("INSERT ... VALUES (%s, %s)", (1, "a"))
    db.dispose()

The shipper sends PostgreSQL the same SQL it sends through an SQLAlchemy engine, so it needs
no more of an engine than ``stores.sqlite_db.SQLiteDB`` gives the embedded SQLite: the
``dialect.name``, ``begin()`` and ``exec_driver_sql`` it calls, with the connect, statement
and lock timeouts ``stores.database.make_engine`` sets, and its pool's pre-ping and recycle
for the one connection kept. SQLAlchemy is ~10 MB a process keeps once imported
(docs/CAPACITY_PLAN.md, issue 17); the supervisor, the console and migrations keep using it.
Errors are ``psycopg.Error``, which ``errors`` names for callers that also handle SQLAlchemy's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import psycopg

RECYCLE_S = 300.0  # make_engine's pool_recycle: a connection older than this is replaced


@dataclass(frozen=True, slots=True)
class _Dialect:
    name: str = "postgresql"


def libpq_url(url: str) -> str:
    """``postgresql+psycopg://`` (SQLAlchemy's spelling) -> ``postgresql://`` (libpq's; pure)."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+', 1)[0]}{sep}{rest}"


def connect_args(timeout_s: float, application_name: str) -> dict[str, Any]:
    """The connection parameters ``make_engine`` passes: every wait bounded (pure)."""
    timeout_ms = int(timeout_s * 1000)
    return {
        "connect_timeout": max(1, int(timeout_s)),
        "options": f"-c statement_timeout={timeout_ms} -c lock_timeout={timeout_ms}",
        "application_name": application_name,
    }


class PgConnection:
    """One transaction's connection (what ``PgDB.begin()`` yields)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.dbapi = conn

    def exec_driver_sql(self, sql: str, params: Any = ()) -> None:
        """``params``: one tuple or mapping, or a list of them (``executemany``), as
        SQLAlchemy's ``exec_driver_sql`` takes them."""
        with self.dbapi.cursor() as cur:
            if isinstance(params, list):
                cur.executemany(sql, params)
            else:
                cur.execute(sql, params)

    def rows(self, sql: str, params: Any = ()) -> list[Any]:
        with self.dbapi.cursor() as cur:
            return cur.execute(sql, params).fetchall()


class PgDB:
    """One connection to PostgreSQL, used by one thread at a time (a lock serialises callers)."""

    dialect = _Dialect()
    errors: tuple[type[Exception], ...] = (psycopg.Error,)

    def __init__(self, url: str, *, timeout_s: float, application_name: str) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._args = connect_args(timeout_s, application_name)
        self._conn: psycopg.Connection[Any] | None = None
        self._born = 0.0
        self._lock = threading.Lock()

    def _connection(self) -> psycopg.Connection[Any]:
        conn = self._conn
        if conn is not None and (conn.closed or time.monotonic() - self._born > RECYCLE_S):
            self._drop()
            conn = None
        if conn is not None:
            try:  # make_engine's pool_pre_ping: a server restarted meanwhile costs no failure
                conn.execute("SELECT 1")
            except psycopg.Error:
                self._drop()
                conn = None
        if conn is None:
            # autocommit: no implicit transactions; begin() opens and closes its own.
            conn = psycopg.connect(libpq_url(self.url), autocommit=True, **self._args)
            self._conn, self._born = conn, time.monotonic()
        return conn

    def _drop(self) -> None:
        if self._conn is not None:
            with suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    @contextmanager
    def begin(self) -> Iterator[PgConnection]:
        """A transaction: committed when the block ends, rolled back if it raises."""
        with self._lock:
            conn = self._connection()
            try:
                with conn.transaction():
                    yield PgConnection(conn)
            except BaseException:
                if conn.broken:  # the next begin() connects afresh
                    self._drop()
                raise

    connect = begin  # a read is a transaction too

    def dispose(self) -> None:
        """Close the connection; never waits: a transaction still running in another thread (a
        shipper past its stop deadline) keeps it, as SQLAlchemy's ``dispose`` leaves a
        checked-out connection alone."""
        if not self._lock.acquire(blocking=False):
            return
        try:
            self._drop()
        finally:
            self._lock.release()
