"""A worker reads its schema's revision without Alembic, and migrates its own SQLite in a child.

Alembic (with Mako and Pygments) is ~11 MB a process keeps once imported; a serving worker
needs only to know whether the schema is at head (docs/CAPACITY_PLAN.md, issue 17 phase 4).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from falcon_platform.config.settings import Settings
from falcon_platform.errors import DependencyError
from falcon_platform.stores import database
from falcon_platform.stores.migrate import main as migrate_main


def test_the_head_revision_constant_is_alembics_head() -> None:
    """A new migration must move ``HEAD_REVISION`` too, or workers would call it behind."""
    assert database.head_revision() == database.HEAD_REVISION


def test_the_revision_is_read_as_alembic_reads_it(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    url = database.local_sqlite_url(settings)
    engine = database.make_engine(settings, url)
    try:
        with engine.connect() as conn:  # a new file: no version table yet
            assert database.current_revision(conn) is None
            assert MigrationContext.configure(conn).get_current_revision() is None
        database.upgrade(settings, url)
        with engine.connect() as conn:
            ours = database.current_revision(conn)
            assert ours == MigrationContext.configure(conn).get_current_revision()
            assert ours == database.head_revision()
    finally:
        engine.dispose()


def test_a_worker_without_alembic_migrates_its_new_sqlite_in_a_child(tmp_path: Path) -> None:
    """What a lone worker (a pod, plain uvicorn) runs at start on a fresh FALCON_HOME: the
    schema ends at head and this process never imports Alembic, Mako or Pygments."""
    code = (
        "import json, sys\n"
        "from falcon_platform.config.settings import Settings\n"
        "from falcon_platform.stores import database\n"
        f"settings = Settings(home={str(tmp_path)!r})\n"
        "database.ensure_schema(settings)\n"
        "state = database.schema_state(settings)\n"
        "print(json.dumps([state.up_to_date, sorted({m.split('.')[0] for m in sys.modules})]))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FALCON_")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, check=True).stdout  # fmt: skip
    up_to_date, modules = json.loads(out)
    assert up_to_date
    assert not {"alembic", "mako", "pygments"} & set(modules), modules
    engine = create_engine(database.local_sqlite_url(Settings(home=tmp_path)))
    try:
        with engine.connect() as conn:  # an independent reader agrees
            assert MigrationContext.configure(conn).get_current_revision() == "0005"
    finally:
        engine.dispose()


def test_a_failed_child_migration_raises_its_own_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(home=tmp_path)
    settings.data_dir.mkdir(parents=True)
    (settings.data_dir / "falcon.db").write_bytes(b"not a database " * 100)
    monkeypatch.delitem(sys.modules, "alembic", raising=False)  # take the child's path
    with pytest.raises(DependencyError, match=r"cannot migrate the database at .*not a database"):
        database.upgrade_local(settings, database.local_sqlite_url(settings))


def test_the_child_entry_point_refuses_anything_but_a_sqlite_url(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert migrate_main(["postgresql://db/falcon", "/tmp", "5"]) == 2
    assert "usage:" in capsys.readouterr().err
