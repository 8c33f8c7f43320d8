"""The shipper against an embedded SQLite database: order, idempotency, breaker, deletion."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

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
from falcon_platform.stores.shipper import prepare_rows, ship_directory, ship_segment
from falcon_platform.testing.stores import sample_record as record


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    settings = Settings(home=tmp_path)
    database.upgrade(settings)
    return database.make_engine(settings)


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
    tmp_path: Path, engine: Engine
) -> None:
    spool_dir = tmp_path / "spool"
    spool(spool_dir, 10)
    [segment] = closed_segments(spool_dir)
    copy = segment.read_bytes()
    ship_segment(engine, segment, batch=100)
    segment.write_bytes(copy)  # a crash between commit and delete: the file comes back
    ship_segment(engine, segment, batch=100)
    assert count(engine) == 10


def test_torn_last_line_ships_the_complete_rows(tmp_path: Path, engine: Engine) -> None:
    segment = tmp_path / "00000000000000000001-1-000001.seg"
    segment.write_bytes(encode_record(record(1)) + encode_record(record(2))[:30])
    result = ship_segment(engine, segment, batch=100)
    assert result is not None
    assert result.torn_tail
    assert count(engine) == 1
    assert not segment.exists()


def test_failing_database_keeps_segments_counts_spill_and_opens_the_breaker(
    tmp_path: Path, engine: Engine
) -> None:
    spool_dir = tmp_path / "spool"
    account = spool(spool_dir, 20)
    # A database without the table: every insert fails like an unreachable server would.
    broken = database.make_engine(Settings(home=tmp_path), f"sqlite:///{tmp_path / 'empty.db'}")
    breaker = CircuitBreaker("postgresql", BreakerPolicy(failure_threshold=2, reset_timeout_s=60))
    for _ in range(3):
        assert not ship_directory(broken, spool_dir, account, breaker, batch=100,
                                  deadline=time.monotonic() + 5)  # fmt: skip
    assert breaker.state is BreakerState.OPEN
    assert len(closed_segments(spool_dir)) == 2
    assert account.rows_pending == 20
    assert account.rows_spilled == 20, "every waiting segment counts as spilled, once"
    # The database comes back: a fresh breaker (as after the reset timeout) ships all, in order.
    assert ship_directory(engine, spool_dir, account, CircuitBreaker("postgresql"), batch=100,
                          deadline=time.monotonic() + 5)  # fmt: skip
    assert count(engine) == 20
    assert account.rows_pending == 0
    assert account.rows_lost == 0


def test_prepare_rows_cuts_over_long_strings_to_the_column_length() -> None:
    [row] = prepare_rows([{"request_id": "r", "error_type": "x" * 500, "cache_hit": 0}])
    assert len(row["error_type"]) == 64
    assert row["cache_hit"] is False
    assert row["idempotency_hit"] is False
