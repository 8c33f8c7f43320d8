"""Embedded stores as a worker builds them: SQLite idempotency, request log, status and stats."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from sqlalchemy import func, select

from falcon_platform.config.settings import Settings
from falcon_platform.stores import database
from falcon_platform.stores.base import StoredResponse
from falcon_platform.stores.factory import build_stores
from falcon_platform.stores.schema import request_log
from falcon_platform.stores.sqlite_db import SQLiteDB
from falcon_platform.stores.sqlite_idempotency import SQLiteIdempotencyStore
from falcon_platform.testing.stores import fake_stores, sample_record


def idem_store(settings: Settings, now: list[float]) -> SQLiteIdempotencyStore:
    db = SQLiteDB(database.local_sqlite_path(settings), timeout_s=1.0)
    return SQLiteIdempotencyStore(db, ttl_s=10, now=lambda: now[0])


def response(tag: str, at: float = 0.0) -> StoredResponse:
    return StoredResponse(body_hash=f"h-{tag}", status_code=200, body=tag.encode(), created_at=at)


async def test_racing_puts_from_two_workers_resolve_to_the_first_response(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    database.upgrade(settings, database.local_sqlite_url(settings))
    now = [100.0]
    a, b = idem_store(settings, now), idem_store(settings, now)  # two engines: two "workers"
    results = await asyncio.gather(
        *(s.put(f"k{i}", response(f"{n}{i}")) for i in range(20) for n, s in (("a", a), ("b", b)))
    )
    for i in range(20):
        first, second = results[2 * i], results[2 * i + 1]
        assert first == second, "both workers must return the one stored response"
    stored = await b.get("k0")
    assert stored is not None
    assert stored == results[0]
    a.close()
    b.close()


async def test_keys_expire_after_the_ttl_and_can_be_reused(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    database.upgrade(settings, database.local_sqlite_url(settings))
    now = [100.0]
    store = idem_store(settings, now)
    assert await store.put("k", response("one")) == response("one")
    now[0] = 109.0
    assert await store.get("k") == response("one")
    assert await store.put("k", response("two")) == response("one"), "still live: the first wins"
    now[0] = 110.5
    assert await store.get("k") is None
    assert await store.put("k", response("two")) == response("two"), "expired: a new response"
    store.close()


async def test_embedded_stores_ship_appended_rows_into_sqlite_on_close(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, shutdown_grace_s=10)
    stores = build_stores(settings)
    await stores.start()
    for i in range(50):
        stores.request_log.append(sample_record(i))
    assert stores.stats().rows_pending == 50
    await stores.close()
    engine = database.make_engine(settings)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(request_log)).scalar_one() == 50
    stats = stores.stats()
    assert (stats.rows_written, stats.rows_pending, stats.rows_lost) == (50, 0, 0)
    assert stats.disk_budget_bytes > 0
    status = stores.status()
    assert {k: v["backend"] for k, v in status.items()} == {
        "cache": "memory",
        "idempotency": "sqlite",
        "request_log": "sqlite",
    }
    assert all(v["state"] == "ok" for v in status.values())
    assert stores.degraded() == frozenset()


async def test_a_restarted_worker_ships_what_its_previous_incarnation_left(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, shutdown_grace_s=10)
    first = build_stores(settings)  # never started: no shipper of its own
    for i in range(30):
        first.request_log.append(sample_record(i))
    # The process "dies": its open segment stays behind and its flock goes with the fd.
    writer = first.request_log.writer  # type: ignore[attr-defined]
    assert writer._fd is not None
    os.close(writer._fd)
    writer._fd = None
    assert list((settings.spool_dir / "w0").glob("*.open")), "left as an open segment"
    second = build_stores(settings)
    await second.start()
    await second.close()
    engine = database.make_engine(settings)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(request_log)).scalar_one() == 30


def test_fake_stores_report_redis_degraded_after_a_failure() -> None:
    stores = fake_stores()
    assert stores.degraded() == frozenset()
    stores.breakers["redis"].record_failure(ConnectionError("down"))
    assert stores.degraded() == frozenset({"redis"})
    assert stores.stats().breaker_states == {"redis": 1}
    assert stores.stats().breaker_transitions == {("redis", "open"): 1}


def test_migrated_sqlite_schema_equals_the_metadata(tmp_path: Path) -> None:
    """Every migration (0001..0003) applied to SQLite gives exactly ``stores.schema``."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine

    from falcon_platform.stores.schema import metadata

    settings = Settings(home=tmp_path)
    url = database.local_sqlite_url(settings)
    database.upgrade(settings, url)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    finally:
        engine.dispose()


def test_ensure_schema_migrates_a_new_sqlite_once_then_only_reads_the_revision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The supervisor migrates before any worker starts; a worker then finds the schema at
    head and runs no migration (N workers used to run N upgrades at once)."""
    settings = Settings(home=tmp_path)
    upgrades: list[str | None] = []
    real_upgrade = database.upgrade_local

    def counting_upgrade(s: Settings, url: str) -> None:
        upgrades.append(url)
        real_upgrade(s, url)

    monkeypatch.setattr(database, "upgrade_local", counting_upgrade)
    database.ensure_schema(settings)  # the supervisor, first
    assert upgrades == [database.local_sqlite_url(settings)]
    assert database.schema_state(settings).up_to_date
    for _ in range(3):  # three workers
        database.ensure_schema(settings)
    assert len(upgrades) == 1
