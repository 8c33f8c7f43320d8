"""Where the relational store is, how to connect, and whether its schema is current.

    url = database_url(settings)          # sqlite:///<home>/data/falcon.db unless FALCON_DATABASE_URL
    engine = make_engine(settings)        # bounded pool and timeouts, WAL for SQLite
    ensure_schema(settings)               # embedded SQLite: upgraded; external: SchemaBehindError
    upgrade(settings)                     # what `falcon db upgrade` runs
    schema_revision(settings)             # what `falcon db current` prints

Migrations live in ``stores/migrations`` (packaged); Alembic is configured here, in code, and
imported only where migrations run: a serving worker reads the schema's revision with one
``SELECT`` against :data:`HEAD_REVISION`, and a lone worker that must upgrade its own SQLite
does it in a child process (``stores/migrate.py``). Alembic with Mako and Pygments is ~11 MB
a process keeps for its whole life once imported (docs/CAPACITY_PLAN.md, issue 17 phase 4).
"""

from __future__ import annotations

import fcntl
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from falcon_platform.config.settings import Settings
from falcon_platform.errors import DependencyError, SchemaBehindError
from falcon_platform.stores.sqlite_db import SQLiteDB, apply_pragmas

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy import Connection, Engine

    from falcon_platform.stores.pg_db import PgConnection, PgDB

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
UPGRADE_COMMAND = "falcon db upgrade"
#: The newest revision in ``stores/migrations`` (a test checks it against Alembic's own head):
#: a worker compares the database with it without importing Alembic.
HEAD_REVISION = "0005"
VERSION_TABLE = "alembic_version"  # Alembic's default, which env.py keeps
PSYCOPG_PREFIX = "postgresql+psycopg://"  # what normalize_url gives PostgreSQL
MIGRATE_TIMEOUT_S = 120.0  # a child migrating the local SQLite (it may wait on another's lock)


def local_sqlite_path(settings: Settings) -> Path:
    """The machine's embedded database (also the idempotency fallback when Redis is away)."""
    return (settings.data_dir / "falcon.db").resolve()


def local_sqlite_url(settings: Settings) -> str:
    return f"sqlite:///{local_sqlite_path(settings)}"


def database_url(settings: Settings) -> str:
    """FALCON_DATABASE_URL (``postgresql://`` gets the psycopg 3 driver) or the embedded SQLite."""
    if settings.database_url is None:
        return local_sqlite_url(settings)
    return normalize_url(settings.database_url.get_secret_value())


def normalize_url(url: str) -> str:
    """``postgres://`` / ``postgresql://`` -> ``postgresql+psycopg://`` (the driver we ship)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def redacted(url: str) -> str:
    """The URL without its password, for logs, status and errors."""
    if url.startswith("sqlite"):
        return url  # a file path: no password to hide
    # By hand, as SQLAlchemy's make_url(url).render_as_string(hide_password=True) renders a
    # password (a test compares them): a serving worker names its database without SQLAlchemy.
    scheme, sep, rest = url.partition("://")
    netloc, slash, tail = rest.partition("/")
    userinfo, at, hostport = netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{hostport}{slash}{tail}"


def is_embedded(settings: Settings) -> bool:
    return settings.database_url is None


def make_engine(
    settings: Settings,
    url: str | None = None,
    *,
    pool_size: int | None = None,
    sqlite_cache_kib: int | None = None,
) -> Engine:
    """An engine with every wait bounded by ``database_timeout_s``.

    PostgreSQL: pool of ``database_pool_size`` (no overflow), connect timeout, and
    ``statement_timeout``/``lock_timeout`` so a locked table fails a ship fast instead of
    hanging the shipper. SQLite: WAL, ``synchronous=NORMAL``, busy timeout, and a page cache
    of ``sqlite_cache_kib`` per connection (None: SQLite's default, 2 MiB).
    """
    from sqlalchemy import create_engine

    url = url or database_url(settings)
    timeout_s = settings.database_timeout_s
    if url.startswith("sqlite"):
        return sqlite_engine(url, timeout_s, pool_size=pool_size or 2, cache_kib=sqlite_cache_kib)
    from falcon_platform.stores.pg_db import RECYCLE_S, connect_args  # PostgreSQL only: psycopg

    return create_engine(
        url,
        pool_size=pool_size or settings.database_pool_size,
        max_overflow=0,
        pool_timeout=timeout_s,
        pool_pre_ping=True,
        pool_recycle=RECYCLE_S,
        connect_args=connect_args(timeout_s, f"falcon-{settings.worker_id}"),
    )


def sqlite_engine(
    url: str, timeout_s: float, *, pool_size: int, cache_kib: int | None = None
) -> Engine:
    """SQLite: WAL, ``synchronous=NORMAL``, busy timeout (the directory is created)."""
    from sqlalchemy import create_engine, event
    from sqlalchemy.engine import make_url

    path = make_url(url).database
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": timeout_s}, pool_size=pool_size)
    event.listen(engine, "connect", _sqlite_pragmas(timeout_s, cache_kib))
    return engine


def _sqlite_pragmas(timeout_s: float, cache_kib: int | None = None) -> Any:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        apply_pragmas(dbapi_connection, timeout_s, cache_kib)

    return on_connect


def alembic_config() -> Config:
    """Alembic configured in code: no alembic.ini at run time."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def head_revision() -> str:
    """The newest migration, as Alembic reads ``stores/migrations`` (imports Alembic)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "stores/migrations has no revisions"
    return head


def current_revision(conn: Connection) -> str | None:
    """The database's revision, read as Alembic's ``MigrationContext`` reads it (None: no
    version table, or not exactly one row, which an upgrade then sorts out or refuses)."""
    from sqlalchemy import text

    if not conn.dialect.has_table(conn, VERSION_TABLE):
        return None
    rows = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()  # noqa: S608
    return str(rows[0]) if len(rows) == 1 else None


def pg_revision(conn: PgConnection) -> str | None:
    """``current_revision`` through psycopg (the version table as the search path finds it)."""
    if not conn.rows(f"SELECT to_regclass('{VERSION_TABLE}') IS NOT NULL")[0][0]:
        return None
    rows = conn.rows(f"SELECT version_num FROM {VERSION_TABLE}")  # noqa: S608 (a constant)
    return str(rows[0][0]) if len(rows) == 1 else None


@dataclass(frozen=True, slots=True)
class SchemaState:
    url: str  # password hidden
    current: str | None
    head: str

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head

    def as_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "current": self.current,
            "head": self.head,
            "up_to_date": self.up_to_date,
        }


def schema_state(settings: Settings, url: str | None = None) -> SchemaState:
    """Read the database's Alembic revision (``DependencyError`` if it cannot be reached).
    PostgreSQL through psycopg alone (what a serving worker checks at start, without
    SQLAlchemy); any other URL through an engine."""
    url = url or database_url(settings)
    read = _pg_revision if url.startswith(PSYCOPG_PREFIX) else _engine_revision
    try:
        current = read(settings, url)
    except _Unreachable as exc:
        source = settings.sources.get("database_url", "default")
        raise DependencyError(
            f"cannot reach the database at {redacted(url)} (FALCON_DATABASE_URL, from {source}): "
            f"{root_cause(exc.__cause__ or exc)}; start it or correct FALCON_DATABASE_URL, then "
            "check with `falcon db current`"
        ) from exc.__cause__
    return SchemaState(redacted(url), current, HEAD_REVISION)


class _Unreachable(Exception):
    """The database cannot be read (the driver's or SQLAlchemy's error is its cause)."""


def _pg_revision(settings: Settings, url: str) -> str | None:
    import psycopg

    from falcon_platform.stores.pg_db import PgDB

    db = PgDB(url, timeout_s=settings.database_timeout_s,
              application_name=f"falcon-{settings.worker_id}")  # fmt: skip
    try:
        with db.connect() as conn:
            return pg_revision(conn)
    except psycopg.Error as exc:
        raise _Unreachable from exc
    finally:
        db.dispose()


def _engine_revision(settings: Settings, url: str) -> str | None:
    from sqlalchemy.exc import SQLAlchemyError

    engine = make_engine(settings, url, pool_size=1)
    try:
        with engine.connect() as conn:
            return current_revision(conn)
    except SQLAlchemyError as exc:
        raise _Unreachable from exc
    finally:
        engine.dispose()


def local_schema_state(settings: Settings) -> SchemaState:
    """The embedded SQLite's revision, read through sqlite3 (what a serving worker checks at
    start without importing SQLAlchemy); ``DependencyError`` if the file cannot be read."""
    path = local_sqlite_path(settings)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=settings.database_timeout_s)
        try:
            found = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (VERSION_TABLE,)
            ).fetchone()
            read = f"SELECT version_num FROM {VERSION_TABLE}"  # noqa: S608 (a constant)
            rows = conn.execute(read).fetchall() if found else []
        finally:
            conn.close()
    except (OSError, sqlite3.Error) as exc:
        raise DependencyError(
            f"cannot read the embedded database {path}: {exc}; check FALCON_HOME's data "
            "directory (permissions, free space), or move the file aside to start afresh"
        ) from exc
    current = str(rows[0][0]) if len(rows) == 1 else None
    return SchemaState(f"sqlite:///{path}", current, HEAD_REVISION)


def shipping_database(
    settings: Settings,
    url: str | None = None,
    *,
    pool_size: int | None = None,
    sqlite_cache_kib: int | None = None,
) -> Engine | SQLiteDB | PgDB:
    """Where the request log ships: the embedded SQLite through sqlite3 (``SQLiteDB``) or
    PostgreSQL through psycopg (``PgDB``, one connection: the shipper is one thread), so a
    serving worker imports no SQLAlchemy; an engine for any other FALCON_DATABASE_URL."""
    if url is None and is_embedded(settings):
        return SQLiteDB(
            local_sqlite_path(settings),
            timeout_s=settings.database_timeout_s,
            cache_kib=sqlite_cache_kib,
        )
    url = url or database_url(settings)
    if url.startswith(PSYCOPG_PREFIX):
        from falcon_platform.stores.pg_db import PgDB

        return PgDB(
            url,
            timeout_s=settings.database_timeout_s,
            application_name=f"falcon-{settings.worker_id}",
        )
    return make_engine(settings, url, pool_size=pool_size)


def root_cause(exc: BaseException) -> str:
    """The driver's own first line (``connection refused``), not SQLAlchemy's wrapper with
    its statement, parameters and documentation link (pure)."""
    inner = getattr(exc, "orig", None) or exc.__cause__ or exc
    lines = [line.strip() for line in str(inner).splitlines() if line.strip()]
    first = lines[0] if lines else type(inner).__name__
    return first.removeprefix("connection failed: ")


def upgrade(settings: Settings, url: str | None = None) -> SchemaState:
    """Apply every migration up to head (what ``falcon db upgrade`` runs); idempotent.

    Serialised by a lock file under ``data_dir`` so workers starting together on one
    machine do not race on the embedded SQLite.
    """
    url = url or database_url(settings)
    migrate(make_engine(settings, url, pool_size=1), url, settings.data_dir)
    return schema_state(settings, url)


def migrate(engine: Engine, url: str, data_dir: Path) -> None:
    """Upgrade the database behind ``engine`` to head, under the lock file in ``data_dir``;
    the engine is disposed of."""
    from alembic import command  # only where migrations run: a worker reads the revision
    from sqlalchemy.exc import SQLAlchemyError

    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        with (data_dir / ".migrate.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            with engine.begin() as conn:
                cfg = alembic_config()
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
    except SQLAlchemyError as exc:
        raise DependencyError(
            f"cannot migrate the database at {redacted(url)}: {root_cause(exc)}"
        ) from exc
    finally:
        engine.dispose()


def upgrade_local(settings: Settings, url: str) -> None:
    """Upgrade this machine's SQLite at ``url``: in a child process (``stores/migrate.py``)
    unless this process has Alembic loaded already, so a serving worker that migrates its own
    file (a pod, plain uvicorn) does not keep Alembic, Mako and Pygments (~11 MB) for its
    whole life. ``DependencyError`` with the child's own message if it fails."""
    if "alembic" in sys.modules:
        migrate(make_engine(settings, url, pool_size=1), url, settings.data_dir)
        return
    cmd = [sys.executable, "-m", "falcon_platform.stores.migrate", url, str(settings.data_dir),
           repr(settings.database_timeout_s)]  # fmt: skip
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=MIGRATE_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise DependencyError(
            f"migrating {redacted(url)} took over {MIGRATE_TIMEOUT_S:g} s (a lock held by "
            f"another process under {settings.data_dir}?); run `{UPGRADE_COMMAND}` by hand"
        ) from exc
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise DependencyError(
            lines[-1] if lines else f"migrating {redacted(url)} failed ({done.returncode})"
        )


def ensure_schema(settings: Settings) -> None:
    """Make the schema usable: upgrade the embedded SQLite; refuse an external one that is behind.

    The local SQLite (idempotency fallback) is upgraded only when it is behind: under a
    supervisor that has already happened once, before any worker starts (``falcon up`` runs
    this first), so a worker only reads the revision; a worker started on its own (a pod, plain
    uvicorn) upgrades its own file, serialised by a lock. With FALCON_DATABASE_URL set, a
    schema behind head raises ``SchemaBehindError`` naming ``falcon db upgrade``; an
    unreachable database raises ``DependencyError``.
    """
    if not local_schema_state(settings).up_to_date:
        upgrade_local(settings, local_sqlite_url(settings))
    if is_embedded(settings):
        return
    state = schema_state(settings)
    if not state.up_to_date:
        raise SchemaBehindError(
            f"the database at {state.url} is at schema revision {state.current or 'none'}, "
            f"this release needs {state.head}; run `{UPGRADE_COMMAND}` "
            "(with the same FALCON_DATABASE_URL) and start again"
        )
