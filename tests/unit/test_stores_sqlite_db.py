"""The embedded SQLite through sqlite3: transactions commit or roll back whole, with the pragmas
SQLAlchemy's engine sets, and closing never waits on another thread's transaction."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from falcon_platform.stores.sqlite_db import SQLiteDB


def _rows(path: Path) -> list[tuple[int]]:
    with sqlite3.connect(path) as conn:  # an independent reader
        return conn.execute("SELECT v FROM t ORDER BY v").fetchall()


@pytest.fixture
def db(tmp_path: Path) -> SQLiteDB:
    db = SQLiteDB(tmp_path / "data" / "falcon.db", timeout_s=2.0, cache_kib=256)
    with db.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (v INTEGER PRIMARY KEY)")
    return db


def test_a_transaction_commits_every_statement_or_none(db: SQLiteDB) -> None:
    with db.begin() as conn:
        conn.exec_driver_sql("INSERT INTO t VALUES (?)", (1,))
        conn.exec_driver_sql("INSERT INTO t VALUES (?)", [(2,), (3,)])  # a list: executemany

    def duplicate() -> None:
        with db.begin() as conn:
            conn.exec_driver_sql("INSERT INTO t VALUES (?)", (4,))
            conn.exec_driver_sql("INSERT INTO t VALUES (?)", (1,))  # duplicate: all rolled back

    with pytest.raises(sqlite3.IntegrityError):
        duplicate()
    assert _rows(db.path) == [(1,), (2,), (3,)]
    with db.begin() as conn:  # the connection is usable again
        conn.exec_driver_sql("INSERT INTO t VALUES (?)", (5,))
    assert _rows(db.path) == [(1,), (2,), (3,), (5,)]
    db.dispose()


def test_the_connection_has_the_engines_pragmas(db: SQLiteDB) -> None:
    with db.connect() as conn:
        assert conn.rows("PRAGMA journal_mode") == [("wal",)]
        assert conn.rows("PRAGMA synchronous") == [(1,)]  # NORMAL
        assert conn.rows("PRAGMA busy_timeout") == [(2000,)]
        assert conn.rows("PRAGMA cache_size") == [(-256,)]
    db.dispose()


def test_dispose_does_not_wait_for_another_threads_transaction(db: SQLiteDB) -> None:
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        with db.begin() as conn:
            conn.exec_driver_sql("INSERT INTO t VALUES (?)", (7,))
            inside.set()
            release.wait(5)

    thread = threading.Thread(target=hold)
    thread.start()
    assert inside.wait(5)
    started = time.monotonic()
    db.dispose()  # returns at once: the transaction keeps its connection
    waited = time.monotonic() - started
    release.set()
    thread.join(5)
    assert waited < 2.5, "dispose waited for the other thread's transaction (it holds 5 s)"
    assert _rows(db.path) == [(7,)]
    db.dispose()
    assert db._conn is None
