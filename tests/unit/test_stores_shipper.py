"""The shipper against an embedded SQLite database: order, idempotency, breaker, deletion."""

from __future__ import annotations

import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import pytest
from sqlalchemy import Engine, delete, func, select
from sqlalchemy.exc import OperationalError

from falcon_platform.config.settings import Settings
from falcon_platform.stores import database
from falcon_platform.stores.breaker import BreakerPolicy, BreakerState, CircuitBreaker
from falcon_platform.stores.schema import request_log
from falcon_platform.stores.segments import (
    SegmentWriter,
    SpoolAccount,
    closed_segments,
    encode_record,
)
from falcon_platform.stores.shipper import (
    BACKLOG_SEGMENTS,
    Shipper,
    prepare_rows,
    ship_bulk,
    ship_directory,
    ship_rows,
    ship_segment,
    ship_values,
    split_segment,
    value_chunks,
)
from falcon_platform.stores.sqlite_db import SQLiteDB
from falcon_platform.testing.stores import sample_record as record
from falcon_platform.testing.stores import varied_records

if TYPE_CHECKING:
    from falcon_platform.stores.shipper import Database


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    settings = Settings(home=tmp_path)
    database.upgrade(settings)
    return database.make_engine(settings)


@pytest.fixture(params=["sqlalchemy", "sqlite3"])
def target(request: pytest.FixtureRequest, engine: Engine, tmp_path: Path) -> Iterator[Database]:
    """Where the rows are shipped: the engine (PostgreSQL's way, the supervisor's before), or
    the same file through sqlite3 (a serving worker's, without SQLAlchemy); ``engine`` reads."""
    if request.param == "sqlalchemy":
        yield engine
        return
    db = SQLiteDB(database.local_sqlite_path(Settings(home=tmp_path)), timeout_s=5.0)
    yield db
    db.dispose()


@pytest.fixture(params=["sqlalchemy", "sqlite3"])
def broken_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A database without the table: every insert fails like an unreachable server would."""
    path = tmp_path / "empty.db"
    db: Database
    if request.param == "sqlalchemy":
        db = database.make_engine(Settings(home=tmp_path), f"sqlite:///{path}")
    else:
        db = SQLiteDB(path, timeout_s=5.0)
    yield db
    db.dispose()


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(request_log)).scalar_one())


def spool(directory: Path, n: int, *, per_segment: int = 10) -> SpoolAccount:
    account = SpoolAccount(budget_bytes=1 << 30)
    writer = SegmentWriter(directory, account)
    for i in range(n):
        writer.append(encode_record(record(i)))
        if (i + 1) % per_segment == 0:
            writer.rotate()
    writer.rotate()
    return account


def test_ships_every_segment_in_order_and_deletes_them(tmp_path: Path, engine: Engine) -> None:
    spool_dir = tmp_path / "spool"
    account = spool(spool_dir, 35)
    breaker = CircuitBreaker("sqlite")
    done = ship_directory(
        engine, spool_dir, account, breaker, batch=7, deadline=time.monotonic() + 30
    )
    assert done
    assert count(engine) == 35
    assert closed_segments(spool_dir) == []
    assert (account.rows_written, account.rows_pending, account.disk_bytes) == (35, 0, 0)


def test_shipping_the_same_segment_twice_never_duplicates_rows(
    tmp_path: Path, engine: Engine, target: Database
) -> None:
    spool_dir = tmp_path / "spool"
    spool(spool_dir, 10)
    [segment] = closed_segments(spool_dir)
    copy = segment.read_bytes()
    ship_segment(target, segment, batch=100)
    segment.write_bytes(copy)  # a crash between commit and delete: the file comes back
    ship_segment(target, segment, batch=100)
    assert count(engine) == 10


def test_torn_last_line_ships_the_complete_rows(
    tmp_path: Path, engine: Engine, target: Database
) -> None:
    segment = tmp_path / "00000000000000000001-1-000001.seg"
    segment.write_bytes(encode_record(record(1)) + encode_record(record(2))[:30])
    result = ship_segment(target, segment, batch=100)
    assert result is not None
    assert result.torn_tail
    assert count(engine) == 1
    assert not segment.exists()


def test_failing_database_keeps_segments_counts_spill_and_opens_the_breaker(
    tmp_path: Path, engine: Engine, target: Database, broken_target: Database
) -> None:
    spool_dir = tmp_path / "spool"
    account = spool(spool_dir, 20)
    broken = broken_target
    breaker = CircuitBreaker("postgresql", BreakerPolicy(failure_threshold=2, reset_timeout_s=60))
    for _ in range(3):
        assert not ship_directory(broken, spool_dir, account, breaker, batch=100,
                                  deadline=time.monotonic() + 5)  # fmt: skip
    assert breaker.state is BreakerState.OPEN
    assert len(closed_segments(spool_dir)) == 2
    assert account.rows_pending == 20
    assert account.rows_spilled == 20, "every waiting segment counts as spilled, once"
    # The database comes back: a fresh breaker (as after the reset timeout) ships all, in order.
    assert ship_directory(target, spool_dir, account, CircuitBreaker("postgresql"), batch=100,
                          deadline=time.monotonic() + 5)  # fmt: skip
    assert count(engine) == 20
    assert account.rows_pending == 0
    assert account.rows_lost == 0


def test_prepare_rows_cuts_over_long_strings_to_the_column_length() -> None:
    [row] = prepare_rows([{"request_id": "r", "error_type": "x" * 500, "cache_hit": 0}])
    assert len(row["error_type"]) == 64
    assert row["cache_hit"] is False
    assert row["idempotency_hit"] is False


def stored(engine: Engine) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        query = select(request_log).order_by(request_log.c.request_id)
        return [tuple(row) for row in conn.execute(query)]


def test_the_database_unpacking_the_json_stores_what_the_per_row_path_stores(
    engine: Engine,
    target: Database,
) -> None:
    data = b"".join(encode_record(r) for r in varied_records())
    lines, torn = split_segment(data)
    assert not torn
    assert ship_bulk(target, lines, batch=4)  # two arrays, one transaction
    bulk = stored(engine)
    with engine.begin() as conn:
        conn.execute(delete(request_log))
    parsed = ship_rows(target, data, batch=4)
    assert (len(parsed.rows), parsed.corrupt) == (len(varied_records()), 0)
    assert stored(engine) == bulk
    with engine.begin() as conn:
        conn.execute(delete(request_log))
    assert ship_values(target, lines)  # SQLite's multi-row VALUES path, as ship_segment uses
    assert stored(engine) == bulk
    by_id = {row[0]: row for row in bulk}
    names = [c.name for c in request_log.columns]
    long = dict(zip(names, by_id["req-long"], strict=True))
    assert (len(long["prediction"]), len(long["error_type"]), len(long["client_id"])) == (
        128,
        64,
        64,
    )
    assert dict(zip(names, by_id["req-hits"], strict=True))["cache_hit"] is True
    assert dict(zip(names, by_id["req-unicode"], strict=True))["input_text"] == (
        'naïve café — 日本語 "quoted"\n'
    )


@pytest.mark.parametrize(
    "bad_line",
    [
        b"{not json",
        b'{"ts": 1.0, "worker": "w0"}',
        b"[1, 2]",
        b'"a string"',
        b'{"request_id": "\xff\xfe"}',
    ],
    ids=["not-json", "no-request-id", "array", "string", "not-utf8"],
)
def test_a_line_the_database_refuses_sends_the_segment_row_by_row_and_counts_it_lost(
    tmp_path: Path, engine: Engine, target: Database, bad_line: bytes
) -> None:
    segment = tmp_path / "00000000000000000001-1-000001.seg"
    segment.write_bytes(encode_record(record(1)) + bad_line + b"\n" + encode_record(record(2)))
    result = ship_segment(target, segment, batch=100)
    assert result is not None
    assert (result.rows, result.corrupt, result.torn_tail) == (2, 1, False)
    assert count(engine) == 2
    assert not segment.exists()


@pytest.mark.parametrize("total", [0, 1, 49, 50, 51, 99, 237, 1000, 1023])
def test_value_chunks_cover_every_row_with_a_handful_of_statement_sizes(total: int) -> None:
    sizes = value_chunks(total, 50)
    assert sum(sizes) == total
    assert set(sizes) <= {50, 32, 16, 8, 4, 2, 1}
    assert sizes == sorted(sizes, reverse=True)


def test_the_values_path_ships_a_segment_of_many_statements_in_one_transaction(
    tmp_path: Path, engine: Engine, target: Database
) -> None:
    lines = [encode_record(record(i)).rstrip() for i in range(237)]
    assert ship_values(target, lines)
    assert count(engine) == 237
    # A bad line in the last statement: nothing of the segment is inserted (one transaction).
    with engine.begin() as conn:
        conn.execute(delete(request_log))
    assert not ship_values(target, [*lines[:-1], b"{not json"])
    assert count(engine) == 0


def test_a_row_the_values_path_refuses_still_ships_through_the_json_path(
    tmp_path: Path, engine: Engine, target: Database
) -> None:
    """An older segment without a later column, a nested value: stored as SQLite's json_each
    stores them, nothing counted lost."""
    full = orjson.loads(encode_record(record(1)))
    older = {k: v for k, v in orjson.loads(encode_record(record(2))).items()
             if k != "client_request_id"}  # fmt: skip
    nested = {**orjson.loads(encode_record(record(3))), "error_type": {"a": 1}}
    for row in (older, nested):
        assert not ship_values(target, [orjson.dumps(full), orjson.dumps(row)])
    segment = tmp_path / "00000000000000000001-1-000001.seg"
    segment.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in (full, older, nested)))
    result = ship_segment(target, segment, batch=100)
    assert result is not None
    assert (result.rows, result.corrupt) == (3, 0)
    by_id = {row[0]: row for row in stored(engine)}
    names = [c.name for c in request_log.columns]
    assert dict(zip(names, by_id[older["request_id"]], strict=True))["client_request_id"] is None
    assert dict(zip(names, by_id[nested["request_id"]], strict=True))["error_type"] == '{"a":1}'


def test_a_missing_table_is_a_database_failure_not_a_refused_row(broken_target: Database) -> None:
    broken = broken_target
    with pytest.raises((OperationalError, sqlite3.OperationalError), match="no such table"):
        ship_bulk(broken, [encode_record(record(1)).rstrip()], batch=10)
    with pytest.raises((OperationalError, sqlite3.OperationalError), match="no such table"):
        ship_values(broken, [encode_record(record(1)).rstrip()])


def _nice_of(tid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, tid)


def _until(predicate: Callable[[], bool], within_s: float = 5.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice is Linux behaviour")
def test_the_shipper_thread_runs_niced_and_only_it(
    tmp_path: Path, engine: Engine, target: Database
) -> None:
    account = SpoolAccount(budget_bytes=1 << 30)
    writer = SegmentWriter(tmp_path / "spool", account)
    shipper = Shipper(target, writer, account, CircuitBreaker("sqlite"), batch=100,
                      interval_s=0.02, nice=7)  # fmt: skip
    base = _nice_of(threading.get_native_id())
    shipper.start()
    try:
        tid = shipper._thread.native_id
        assert tid is not None
        assert _until(lambda: _nice_of(tid) == max(base, 7))
        assert _nice_of(threading.get_native_id()) == base, "the event loop's thread is untouched"
    finally:
        shipper.stop(2.0)


def _behind_shipper(tmp_path: Path) -> tuple[Shipper, SpoolAccount]:
    """A niced shipper with more closed segments than it may fall behind by, and a database
    that refuses every insert (no table), so the backlog stays until ``shipper.engine`` is
    swapped for a working one."""
    spool_dir = tmp_path / "spool"
    account = spool(spool_dir, BACKLOG_SEGMENTS * 10 + 5)
    broken = database.make_engine(Settings(home=tmp_path), f"sqlite:///{tmp_path / 'empty.db'}")
    breaker = CircuitBreaker("sqlite", BreakerPolicy(failure_threshold=1, reset_timeout_s=0.02))
    shipper = Shipper(broken, SegmentWriter(spool_dir, account), account, breaker, batch=100,
                      interval_s=0.01, nice=7)  # fmt: skip
    return shipper, account


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice is Linux behaviour")
@pytest.mark.skipif(os.geteuid() != 0, reason="raising a priority back needs CAP_SYS_NICE")
def test_a_backlog_puts_the_shipper_back_at_the_base_priority_until_it_is_shipped(
    tmp_path: Path, engine: Engine
) -> None:
    shipper, account = _behind_shipper(tmp_path)
    base = _nice_of(threading.get_native_id())
    shipper.start()
    try:
        tid = shipper._thread.native_id
        assert tid is not None
        assert _until(lambda: _nice_of(tid) == base), "behind: back at the base priority"
        shipper.engine = engine  # the database is back: the backlog drains...
        assert _until(lambda: account.rows_pending == 0)
        assert _until(lambda: _nice_of(tid) == max(base, 7)), "...and the shipper yields again"
    finally:
        shipper.stop(2.0)
    assert count(engine) == BACKLOG_SEGMENTS * 10 + 5


def test_without_the_privilege_to_raise_it_back_the_shipper_says_so_once(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from falcon_platform.stores import shipper as shipper_module

    # As an unprivileged user: lowering the priority works, raising it back does not.
    monkeypatch.setattr(shipper_module, "thread_nice", lambda: 0)
    raise_attempts: list[int] = []

    def set_thread_nice(nice: int) -> bool:
        if nice <= 0:
            raise_attempts.append(nice)
        return nice > 0

    monkeypatch.setattr(shipper_module, "set_thread_nice", set_thread_nice)
    shipper, _ = _behind_shipper(tmp_path)
    ticks: list[float] = []
    real_tick = shipper._tick

    def counting_tick(deadline: float) -> bool:
        ticks.append(deadline)
        return real_tick(deadline)

    shipper._tick = counting_tick  # type: ignore[method-assign]
    with caplog.at_level("WARNING", logger="falcon.stores.shipper"):
        shipper.start()
        # Dozens of ticks with the backlog in place after the one failed attempt to raise it.
        assert _until(lambda: bool(raise_attempts) and len(ticks) >= 30, within_s=20), ticks
        assert len(raise_attempts) == 1  # it does not keep trying (and warning) every tick
        shipper.stop(0.5)
    behind = [r for r in caplog.records if "cannot raise its priority back" in r.getMessage()]
    assert len(behind) == 1


def test_the_plain_column_list_is_the_schemas_request_log() -> None:
    """The shipper reads the table's columns from ``stores.columns`` (no SQLAlchemy in a
    serving worker): the same names, order, types and lengths as ``stores.schema``."""
    from sqlalchemy import String

    from falcon_platform.stores.columns import REQUEST_LOG_COLUMNS

    schema = [
        (c.name, c.type.python_type, c.type.length if isinstance(c.type, String) else None)
        for c in request_log.columns
    ]
    assert list(REQUEST_LOG_COLUMNS) == schema
