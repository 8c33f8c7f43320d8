"""PostgreSQL request log: migrations, schema gate, shipping, an outage and idempotent re-ship."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, func, select, text

from falcon_platform.config.settings import Settings
from falcon_platform.errors import DependencyError, SchemaBehindError
from falcon_platform.stores import database
from falcon_platform.stores.factory import build_stores
from falcon_platform.stores.pg_db import PgDB
from falcon_platform.stores.request_log import ship_orphans
from falcon_platform.stores.schema import metadata, request_log
from falcon_platform.testing.servers import PostgresServer, running_postgres
from falcon_platform.testing.stores import sample_record, varied_records

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


@pytest.fixture
def pg_url(postgres: PostgresServer) -> Iterator[str]:
    """A fresh database per test, so no test sees another's rows."""
    name = f"t{time.monotonic_ns()}"
    admin = create_engine(database.normalize_url(postgres.url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield postgres.url.rsplit("/", 1)[0] + f"/{name}"
    admin.dispose()


def settings_for(tmp_path: Path, url: str, **extra: object) -> Settings:
    return Settings(home=tmp_path, database_url=url, shutdown_grace_s=10, **extra)  # type: ignore[arg-type]


def rows(engine: Engine) -> tuple[int, int]:
    """(row count, distinct request ids)."""
    with engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(request_log)).scalar_one()
        distinct = conn.execute(
            select(func.count(request_log.c.request_id.distinct()))
        ).scalar_one()
    return int(total), int(distinct)


def test_external_database_behind_is_refused_with_the_command_then_upgrade_matches_schema(
    tmp_path: Path, pg_url: str
) -> None:
    settings = settings_for(tmp_path, pg_url)
    with pytest.raises(SchemaBehindError) as info:
        database.ensure_schema(settings)
    assert "falcon db upgrade" in info.value.detail
    assert "password" not in info.value.detail
    state = database.upgrade(settings)
    assert state.up_to_date
    database.ensure_schema(settings)
    engine = database.make_engine(settings)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    engine.dispose()


def test_falcon_db_cli_upgrades_and_reports_current_as_json(tmp_path: Path, pg_url: str) -> None:
    env = {**os.environ, "FALCON_HOME": str(tmp_path), "FALCON_DATABASE_URL": pg_url}
    falcon = [str(Path(sys.executable).parent / "falcon")]
    behind = subprocess.run(
        [*falcon, "db", "current", "--json"], env=env, capture_output=True, timeout=60
    )
    assert behind.returncode == 5, behind.stderr
    assert json.loads(behind.stdout)["up_to_date"] is False
    up = subprocess.run(
        [*falcon, "db", "upgrade", "--json"], env=env, capture_output=True, timeout=60
    )
    assert up.returncode == 0, up.stderr
    now = subprocess.run(
        [*falcon, "db", "current", "--json"], env=env, capture_output=True, timeout=60
    )
    assert now.returncode == 0, now.stderr
    report = json.loads(now.stdout)
    assert report["current"] == report["head"]
    assert report["url"].startswith("postgresql+psycopg://postgres@")


async def test_rows_ship_to_postgres_and_survive_an_outage_without_loss_or_duplicates(
    tmp_path: Path, pg_url: str, postgres: PostgresServer
) -> None:
    settings = settings_for(tmp_path, pg_url, database_timeout_s=2, breaker_reset_timeout_s=0.5)
    database.upgrade(settings)
    stores = build_stores(settings)
    await stores.start()
    assert stores.status()["request_log"]["backend"] == "postgresql"
    for i in range(200):
        stores.request_log.append(sample_record(i))
    engine = database.make_engine(settings, pool_size=1)
    await _until(lambda: rows(engine)[0] == 200, 15)

    postgres.stop()
    try:
        for i in range(200, 500):
            stores.request_log.append(sample_record(i))
            if i % 50 == 0:
                await asyncio.sleep(0.05)
        await _until(lambda: "postgresql" in stores.degraded(), 20)
        stats = stores.stats()
        assert stats.rows_pending == 300
        assert stats.rows_spilled > 0
        assert stats.breaker_states["postgresql"] != 0
    finally:
        postgres.start()
    await _until(lambda: stores.stats().rows_pending == 0, 30)
    await stores.close()
    assert rows(engine) == (500, 500)
    stats = stores.stats()
    assert (stats.rows_written, stats.rows_lost) == (500, 0)
    assert stats.breaker_transitions[("postgresql", "closed")] >= 1
    engine.dispose()


def test_shipping_orphans_twice_never_duplicates(tmp_path: Path, pg_url: str) -> None:
    settings = settings_for(tmp_path, pg_url)
    database.upgrade(settings)
    spool = settings.spool_dir / "w7"
    spool.mkdir(parents=True)
    from falcon_platform.stores.segments import encode_record

    data = b"".join(encode_record(sample_record(i, worker="w7")) for i in range(100))
    (spool / "00000000000000000001-1-000001.open").write_bytes(data)  # a killed worker's file
    assert ship_orphans(settings, "w7").rows_shipped == 100
    (spool / "00000000000000000001-1-000001.seg").write_bytes(data)  # the same rows again
    assert ship_orphans(settings).rows_shipped == 100
    engine = database.make_engine(settings, pool_size=1)
    assert rows(engine) == (100, 100)
    engine.dispose()


async def _until(predicate: object, within_s: float) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"condition not met within {within_s}s")


async def test_close_with_postgres_down_returns_within_the_grace_and_keeps_rows_for_later(
    tmp_path: Path, pg_url: str, postgres: PostgresServer
) -> None:
    settings = settings_for(tmp_path, pg_url, database_timeout_s=1)
    settings = settings.model_copy(update={"shutdown_grace_s": 3.0})
    database.upgrade(settings)
    stores = build_stores(settings)
    await stores.start()
    postgres.stop()
    try:
        for i in range(100):
            stores.request_log.append(sample_record(i))
        started = time.monotonic()
        await stores.close()
        took = time.monotonic() - started
        assert took < 6.0, f"close took {took:.1f}s with a 3 s grace"
        assert stores.stats().rows_pending == 100
        assert stores.stats().rows_lost == 0
    finally:
        postgres.start()
    report = ship_orphans(settings)  # what the next start (or the supervisor) does
    assert (report.rows_shipped, report.segments_left) == (100, 0)
    engine = database.make_engine(settings, pool_size=1)
    assert rows(engine) == (100, 100)
    engine.dispose()


@pytest.mark.parametrize("through", ["sqlalchemy", "psycopg"])
def test_postgres_unpacking_the_json_stores_what_the_per_row_path_stores(
    tmp_path: Path, pg_url: str, through: str
) -> None:
    """Through an engine (the supervisor's) and through psycopg alone (a serving worker's
    ``PgDB``): the same rows, and a refused line classified the same way."""
    from falcon_platform.stores.segments import encode_record
    from falcon_platform.stores.shipper import ship_bulk, ship_rows, ship_segment, split_segment

    settings = settings_for(tmp_path, pg_url)
    database.upgrade(settings)
    engine = database.make_engine(settings, pool_size=1)  # reads
    target = engine if through == "sqlalchemy" else database.shipping_database(settings)
    assert isinstance(target, PgDB) == (through == "psycopg")
    data = b"".join(encode_record(r) for r in varied_records())
    lines, _ = split_segment(data)

    def stored() -> list[tuple[object, ...]]:
        with engine.connect() as conn:
            query = select(request_log).order_by(request_log.c.request_id)
            return [tuple(row) for row in conn.execute(query)]

    assert ship_bulk(target, lines, batch=4)
    bulk = stored()
    with engine.begin() as conn:
        conn.execute(request_log.delete())
    assert ship_rows(target, data, batch=4).corrupt == 0
    assert stored() == bulk
    assert len(bulk) == len(varied_records())
    # A line PostgreSQL refuses (not JSON, no request_id) rolls the bulk insert back; the
    # per-row path then stores the good rows and counts the bad one lost.
    for bad in (b"{not json", b'{"ts": 1.0}'):
        with engine.begin() as conn:
            conn.execute(request_log.delete())
        segment = tmp_path / "00000000000000000001-1-000001.seg"
        segment.write_bytes(data + bad + b"\n" + encode_record(sample_record(99)))
        result = ship_segment(target, segment, batch=100)
        assert result is not None
        assert (result.rows, result.corrupt) == (len(varied_records()) + 1, 1)
        assert rows(engine) == (len(varied_records()) + 1,) * 2
    target.dispose()
    engine.dispose()


def test_a_serving_worker_ships_and_checks_the_schema_through_psycopg_alone(
    tmp_path: Path, pg_url: str
) -> None:
    """No SQLAlchemy in the process that ships: the stores' start (schema check), shipping,
    status and close, in a fresh interpreter against the migrated database."""
    settings = settings_for(tmp_path, pg_url)
    database.upgrade(settings)
    code = (
        "import asyncio, sys\n"
        "from falcon_platform.config.settings import Settings\n"
        "from falcon_platform.stores.factory import build_stores\n"
        "from falcon_platform.testing.stores import sample_record\n"
        "async def main():\n"
        "    stores = build_stores(Settings())\n"
        "    await stores.start()\n"
        "    for i in range(50):\n"
        "        stores.request_log.append(sample_record(i))\n"
        "    status = stores.status()['request_log']\n"
        "    await stores.close()\n"
        "    print(status['backend'], stores.stats().rows_written, stores.stats().rows_pending)\n"
        "asyncio.run(main())\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'sqlalchemy', 'alembic'}))\n"
    )
    env = {**os.environ, "FALCON_HOME": str(tmp_path), "FALCON_DATABASE_URL": pg_url}
    env.pop("FALCON_REDIS_URL", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=60, check=True).stdout.splitlines()  # fmt: skip
    assert out == ["postgresql 50 0", "[]"], out
    engine = database.make_engine(settings, pool_size=1)
    assert rows(engine) == (50, 50)
    engine.dispose()


def test_the_schema_check_through_psycopg_reads_what_alembic_reads(
    tmp_path: Path, pg_url: str, postgres: PostgresServer
) -> None:
    settings = settings_for(tmp_path, pg_url, database_timeout_s=1)
    assert database.schema_state(settings).current is None  # no version table yet
    database.upgrade(settings)
    engine = database.make_engine(settings, pool_size=1)
    with engine.connect() as conn:
        assert database.schema_state(settings).current == database.current_revision(conn)
    engine.dispose()
    postgres.stop()
    try:
        with pytest.raises(DependencyError) as info:
            database.schema_state(settings)
    finally:
        postgres.start()
    assert info.value.detail.startswith("cannot reach the database at postgresql+psycopg://")
    assert "FALCON_DATABASE_URL" in info.value.detail


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://falcon:s3cret@db.internal:5432/falcon",
        "postgresql+psycopg://falcon@db.internal/falcon?sslmode=require",
        "postgresql+psycopg://u:p%40ss@127.0.0.1:6543/d",
        "postgresql+psycopg://db.internal/falcon",
    ],
)
def test_the_url_is_redacted_as_sqlalchemy_renders_it(url: str) -> None:
    from sqlalchemy.engine import make_url

    assert database.redacted(url) == make_url(url).render_as_string(hide_password=True)
