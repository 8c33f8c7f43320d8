"""Store drills: Redis stops answering, PostgreSQL refuses connections or is locked (I/O).

Each acts on the deployment's own stores (``FALCON_REDIS_URL``, ``FALCON_DATABASE_URL``) for
``drill.seconds`` and undoes itself; the promise judged is the same for all three: no request
fails and no request-log row is lost (cache bypassed, rows spooled to disk and shipped later)::

    judge = redis_down(session, drill_named("redis-down"))
"""

from __future__ import annotations

import time

from sqlalchemy import Engine, create_engine, make_url, text

from falcon_platform.drills import judge as j
from falcon_platform.drills.model import Check, DrillDef
from falcon_platform.drills.scenarios import Judge
from falcon_platform.drills.session import DrillAbortedError, Session
from falcon_platform.stores.database import database_url


def _zero_failures(obs: j.Observation) -> tuple[list[Check], j.Timings]:
    failed, total = j.failed_in(obs.answers, obs.injected_at, obs.restored_at)
    check = Check("failed_bounded", "0 failed requests", failed == 0 and total > 0,
                    f"{failed} failed of {total}")  # fmt: skip
    return [check], j.Timings()


def redis_down(s: Session, drill: DrillDef) -> Judge:
    import redis

    if s.settings.redis_url is None:
        raise DrillAbortedError("no Redis configured (FALCON_REDIS_URL)")
    client = redis.Redis.from_url(s.settings.redis_url.get_secret_value(), socket_timeout=5)
    try:
        pause_ms = int(drill.seconds * 1000)
        # CLIENT PAUSE ALL: every client's commands wait; it lifts itself (no undo to forget).
        client.client_pause(pause_ms, all=True)
        s.injected_at = time.time()
        s.note(f"Redis paused for {pause_ms} ms (CLIENT PAUSE ALL)", s.injected_at)
        time.sleep(drill.seconds + 0.2)
        client.ping()
        s.restored_at = time.time()
        s.note("Redis answers again", s.restored_at)
    finally:
        client.close()
    return _zero_failures


def _admin_engine(s: Session) -> Engine:
    # No statement/lock timeouts here (make_engine sets them for Falcon's own sessions).
    return create_engine(database_url(s.settings), pool_size=1, max_overflow=0)


def postgres_down(s: Session, drill: DrillDef) -> Judge:
    url = make_url(database_url(s.settings))
    name = str(url.database or "")
    # PostgreSQL refuses to close the database a session is connected to: act from template1.
    engine = create_engine(url.set(database="template1"), pool_size=1, max_overflow=0)
    try:
        conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    except Exception as exc:
        engine.dispose()
        raise DrillAbortedError(
            f"cannot connect to template1 to close {name!r}: {_first(exc)}"
        ) from None
    quoted = conn.dialect.identifier_preparer.quote(name)

    def reopen() -> None:
        conn.execute(text(f"ALTER DATABASE {quoted} ALLOW_CONNECTIONS true"))

    try:
        conn.execute(text(f"ALTER DATABASE {quoted} ALLOW_CONNECTIONS false"))
        s.cleanups.append(reopen)
        ended = conn.execute(
            text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                 "WHERE datname = :name AND pid <> pg_backend_pid()"),
            {"name": name},
        ).scalar_one()  # fmt: skip
        s.injected_at = time.time()
        s.note(f"PostgreSQL database {name} closed to connections; {ended} sessions ended",
               s.injected_at)  # fmt: skip
        time.sleep(drill.seconds)
        reopen()
        s.cleanups.remove(reopen)
        s.restored_at = time.time()
        s.note(f"PostgreSQL database {name} open again", s.restored_at)
    except Exception as exc:
        raise DrillAbortedError(f"cannot close {name!r} to connections: {_first(exc)}") from None
    finally:
        if reopen not in s.cleanups:
            conn.close()
            engine.dispose()
    return _zero_failures


def _first(exc: BaseException) -> str:
    """The first line of a driver error (SQLAlchemy appends the SQL and a link)."""
    return (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [""])[0]


def postgres_slow(s: Session, drill: DrillDef) -> Judge:
    engine = _admin_engine(s)
    try:
        with engine.connect() as conn:
            conn.execute(text("LOCK TABLE request_log IN ACCESS EXCLUSIVE MODE"))
            s.injected_at = time.time()
            s.note("request_log locked (ACCESS EXCLUSIVE): every insert waits", s.injected_at)
            time.sleep(drill.seconds)
            conn.rollback()
        s.restored_at = time.time()
        s.note("request_log unlocked", s.restored_at)
    finally:
        engine.dispose()
    return _zero_failures
