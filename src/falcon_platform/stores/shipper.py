"""The shipper: moves closed request-log segments into the database, in order, off the request path.

One segment is one transaction of idempotent inserts (``ON CONFLICT (request_id) DO NOTHING``
on SQLite and PostgreSQL alike), and the file is deleted only after the commit; a crash
between commit and delete re-ships the segment without duplicating a row. PostgreSQL gets the
segment's lines as JSON arrays that it unpacks itself (``json_to_recordset``, in its own
process); SQLite gets them as multi-row ``INSERT ... VALUES`` statements of ``VALUES_ROWS``
rows, decoded by orjson in C (``ship_values``: half the CPU per row of SQLite's own
``json_each``, which re-read each row's JSON once per column). Only a segment that both ways
refuse (a corrupt line) is decoded row by row in Python, where the bad lines are counted as lost.

    shipper = Shipper(engine, writer, account, breaker, batch=1000, interval_s=0.2, nice=5)
    shipper.start()          # a daemon thread, niced below the event loop
    ...
    shipper.stop(deadline)   # final rotation, ship what is left until the deadline

    ship_orphans(settings)   # the supervisor: ship what killed workers left behind
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from tenacity import Retrying, retry_if_exception, stop_after_attempt, stop_after_delay
from tenacity import wait_random_exponential as wait_jittered

from falcon_platform.stores.breaker import CircuitBreaker
from falcon_platform.stores.columns import REQUEST_LOG_COLUMNS
from falcon_platform.stores.segments import (
    ParsedSegment,
    SegmentWriter,
    SpoolAccount,
    claim_abandoned,
    closed_segments,
    count_rows,
    parse_segment,
)

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from falcon_platform.stores.pg_db import PgDB
    from falcon_platform.stores.sqlite_db import SQLiteDB

    # Where rows go: an SQLAlchemy engine (the supervisor's SQLite, tests) or, in a serving
    # worker, the embedded SQLite through sqlite3 or PostgreSQL through psycopg (no SQLAlchemy).
    Database = Engine | SQLiteDB | PgDB

logger = logging.getLogger("falcon.stores.shipper")

BACKLOG_SEGMENTS = 10  # closed segments waiting (~2 s of rows): the shipper runs un-niced
TICK_BUDGET_S = 2.0  # one tick ships for at most this long, so stop() and rotation stay prompt

_COLUMN_NAMES = tuple(name for name, _, _ in REQUEST_LOG_COLUMNS)
_COLUMNS = set(_COLUMN_NAMES)
# Column -> max length, so an over-long value is cut instead of poisoning the queue forever.
_LENGTHS = {name: length for name, _, length in REQUEST_LOG_COLUMNS if length is not None}
_BOOLEANS = ("cache_hit", "idempotency_hit")


def database_errors(engine: Database) -> tuple[type[Exception], ...]:
    """What a failing database raises through ``engine``: ``sqlite3.Error`` for an
    ``SQLiteDB``, ``psycopg.Error`` for a ``PgDB``, ``SQLAlchemyError`` for an engine
    (imported only then: a serving worker never imports SQLAlchemy)."""
    errors: tuple[type[Exception], ...] | None = getattr(engine, "errors", None)
    if errors is not None:
        return errors
    from sqlalchemy.exc import SQLAlchemyError

    return (SQLAlchemyError,)


def prepare_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep known columns, cut strings to the column length, fill defaults (pure)."""
    out = []
    for row in rows:
        clean = {k: row.get(k) for k in _COLUMNS}
        for name, length in _LENGTHS.items():
            value = clean[name]
            if isinstance(value, str) and len(value) > length:
                clean[name] = value[:length]
        for name in _BOOLEANS:
            clean[name] = bool(clean[name])
        out.append(clean)
    return out


def insert_ignoring_duplicates(engine: Engine) -> Any:
    """``INSERT ... ON CONFLICT (request_id) DO NOTHING`` in the engine's dialect."""
    from sqlalchemy.dialects import postgresql, sqlite

    from falcon_platform.stores.schema import request_log

    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    return dialect.insert(request_log).on_conflict_do_nothing(index_elements=["request_id"])


_DRIVER_INSERTS: dict[tuple[str, str], tuple[str, tuple[str, ...] | None]] = {}
# sqlite3's own paramstyle (qmark), written out: what SQLAlchemy compiles for SQLite.
_SQLITE_INSERT = (
    f"INSERT INTO request_log ({', '.join(_COLUMN_NAMES)}) "  # noqa: S608 (schema's names)
    f"VALUES ({', '.join('?' * len(_COLUMN_NAMES))}) ON CONFLICT (request_id) DO NOTHING"
)
# psycopg's paramstyle (format), written out: the same statement for PostgreSQL.
_POSTGRESQL_INSERT = _SQLITE_INSERT.replace("?", "%s")


def _driver_insert(engine: Database) -> tuple[str, tuple[str, ...] | None]:
    """The insert compiled once to the driver's SQL and, for a positional paramstyle, the
    column order of its parameters. Shipping through ``exec_driver_sql`` skips SQLAlchemy's
    per-row compile and bind processing, which cost more than the inserts themselves
    (profiled: the shipper thread took ~20% of a busy worker's CPU through Core)."""
    from falcon_platform.stores.sqlite_db import SQLiteDB

    if isinstance(engine, SQLiteDB):  # sqlite3: qmark
        return _SQLITE_INSERT, _COLUMN_NAMES
    from falcon_platform.stores.pg_db import PgDB  # after: an SQLite worker needs no psycopg

    if isinstance(engine, PgDB):  # psycopg: format
        return _POSTGRESQL_INSERT, _COLUMN_NAMES
    key = (engine.dialect.name, engine.dialect.paramstyle)
    if key not in _DRIVER_INSERTS:  # keyed by dialect, not engine: tests make many engines
        compiled = insert_ignoring_duplicates(engine).compile(dialect=engine.dialect)
        positional = compiled.positional and compiled.positiontup
        order = tuple(compiled.positiontup) if positional else None
        _DRIVER_INSERTS[key] = (str(compiled), order)
    return _DRIVER_INSERTS[key]


def driver_params(rows: Iterable[dict[str, Any]], order: tuple[str, ...] | None) -> list[Any]:
    """Rows as the driver wants them: tuples in ``order`` (positional) or dicts (pure)."""
    prepared = prepare_rows(rows)
    if order is None:
        return prepared
    return [tuple(row[name] for name in order) for row in prepared]


@dataclass(frozen=True, slots=True)
class ShipResult:
    rows: int  # rows in the segment (sent; duplicates are ignored by the database)
    corrupt: int  # undecodable middle lines (counted as lost)
    torn_tail: bool


def _select_list(read: str, false: str, cut: str) -> str:
    """The SELECT list that reads each column (``read`` formatted with the column name), with
    ``prepare_rows``' defaults for booleans and cuts to the column length (``cut`` formatted
    with the expression and the length)."""
    values = []
    for column in _COLUMN_NAMES:
        expr = read.format(column)
        if column in _BOOLEANS:
            expr = f"coalesce({expr}, {false})"
        elif column in _LENGTHS:
            expr = cut.format(expr, _LENGTHS[column])
        values.append(expr)
    return ", ".join(values)


_POSTGRESQL_TYPES = {str: "text", float: "double precision", int: "bigint", bool: "boolean"}
_SQLITE_VALUES = _select_list("json_extract(value, '$.{}')", "0", "substr({}, 1, {})")
_POSTGRESQL_VALUES = _select_list("r.{}", "false", "left({}, {})")


_NAMES = ", ".join(_COLUMN_NAMES)
# The record the JSON is read into: unbounded text, so an over-long value is cut by left()
# instead of failing the cast (the table's own row type has the varchar limits).
_POSTGRESQL_RECORD = ", ".join(
    f"{name} {_POSTGRESQL_TYPES[kind]}" for name, kind, _ in REQUEST_LOG_COLUMNS
)
# The whole segment goes to the database as one JSON array and the database unpacks it, so
# the worker's thread spends its time in the driver with the GIL released instead of building
# a tuple per row under it (measured: the per-row path made the event loop queue behind the
# shipper; see docs/CAPACITY_PLAN.md). Same cuts and defaults as ``prepare_rows``.
_BULK_INSERTS = {
    "sqlite": (
        f"INSERT INTO request_log ({_NAMES}) "  # noqa: S608 (schema's names; rows are bound)
        f"SELECT {_SQLITE_VALUES} FROM json_each(?) "
        "WHERE true ON CONFLICT (request_id) DO NOTHING"  # WHERE: SQLite's upsert grammar
    ),
    "postgresql": (
        f"INSERT INTO request_log ({_NAMES}) "  # noqa: S608 (schema's names; rows are bound)
        f"SELECT {_POSTGRESQL_VALUES} "
        f"FROM json_to_recordset(%s::json) AS r({_POSTGRESQL_RECORD}) "
        "ON CONFLICT (request_id) DO NOTHING"
    ),
}


def split_segment(data: bytes) -> tuple[list[bytes], bool]:
    """Complete lines of a segment and whether its last line was torn (pure, no decoding)."""
    lines = data.split(b"\n")
    tail = lines.pop()
    return [line for line in lines if line], bool(tail)


def json_arrays(lines: list[bytes], batch: int) -> list[str]:
    """Lines that each hold one JSON object, as JSON arrays of at most ``batch`` rows (pure)."""
    chunks = (lines[start : start + batch] for start in range(0, len(lines), batch))
    return [(b"[" + b",".join(chunk) + b"]").decode() for chunk in chunks]


def _refused_rows(exc: Exception) -> bool:
    """The database refused the rows themselves (a line that is not a JSON object holding the
    NOT NULL columns), not the connection or a lock: the per-row path sorts them out. By the
    DBAPI's class names, which SQLAlchemy's wrappers share (sqlite3's, psycopg's or both);
    psycopg raises their subclasses (``InvalidTextRepresentation`` is a ``DataError``)."""
    kinds = {cls.__name__ for cls in type(exc).__mro__}
    if kinds & {"DataError", "IntegrityError"}:
        return True
    return "OperationalError" in kinds and "malformed JSON" in str(getattr(exc, "orig", exc))


def ship_bulk(engine: Database, lines: list[bytes], *, batch: int) -> bool:
    """Insert the lines through the database's JSON functions in one transaction; False
    (nothing inserted) when the database refuses a line. Other errors propagate."""
    sql = _BULK_INSERTS.get(engine.dialect.name)
    if sql is None:
        return False
    try:
        arrays = json_arrays(lines, batch)
    except UnicodeDecodeError:
        return False
    try:
        with engine.begin() as conn:
            for array in arrays:
                conn.exec_driver_sql(sql, (array,))
    except database_errors(engine) as exc:
        if _refused_rows(exc):
            return False
        raise
    return True


# SQLite: rows per multi-row INSERT. 50 rows x 18 columns = 900 parameters, under the 999 of
# SQLite builds before 3.32. Each statement holds the GIL only while orjson decodes its lines
# and the parameters are bound (all C, ~0.1 ms; measured: 3-4 us per row on a loaded machine);
# the insert itself runs with the GIL released, as the JSON path did.
VALUES_ROWS = 50
_SQLITE_VALUE = _select_list("?", "0", "substr({}, 1, {})")
_SQLITE_ROW = f"({_SQLITE_VALUE})"
_ROW_VALUES = itemgetter(*_COLUMN_NAMES)  # a decoded row -> its values in column order


class _Refused(Exception):
    """A line the fast SQLite path cannot insert as it stands (the JSON path decides)."""


@functools.lru_cache(maxsize=16)
def _values_insert(rows: int) -> str:
    """``INSERT ... VALUES`` for ``rows`` rows, with ``prepare_rows``' cuts and defaults."""
    return (
        f"INSERT INTO request_log ({_NAMES}) VALUES "  # noqa: S608 (schema's names; rows are bound)
        + ", ".join([_SQLITE_ROW] * rows)
        + " ON CONFLICT (request_id) DO NOTHING"
    )


def value_chunks(total: int, most: int = VALUES_ROWS) -> list[int]:
    """Statement sizes for ``total`` rows: ``most`` at a time, the rest in powers of two, so
    a connection prepares a handful of statements, not one per remainder (pure).

    >>> value_chunks(237)
    [50, 50, 50, 50, 32, 4, 1]
    """
    sizes = [most] * (total // most)
    rest = total % most
    bit = 1 << max(0, rest.bit_length() - 1)
    while rest:
        if rest & bit:
            sizes.append(bit)
            rest -= bit
        bit >>= 1
    return sizes


def row_values(lines: list[bytes]) -> tuple[Any, ...]:
    """The lines' column values, row after row, for one multi-row insert (pure). Missing
    columns, lines that are not JSON objects and values SQLite cannot bind raise ``_Refused``."""
    try:
        rows = orjson.loads(b"[" + b",".join(lines) + b"]")
        values = tuple(chain.from_iterable(map(_ROW_VALUES, rows)))
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise _Refused from exc
    if not all(map(_BINDABLE.__contains__, map(type, values))):
        raise _Refused
    return values


_BINDABLE = frozenset({str, int, float, bool, type(None)})


def ship_values(engine: Database, lines: list[bytes]) -> bool:
    """SQLite: insert the lines as multi-row ``VALUES`` statements in one transaction; False
    (nothing inserted) when a line does not decode to a row. Database errors propagate."""
    try:
        with engine.begin() as conn:
            at = 0
            for size in value_chunks(len(lines)):
                conn.exec_driver_sql(_values_insert(size), row_values(lines[at : at + size]))
                at += size
    except (_Refused, OverflowError):  # OverflowError: an integer SQLite cannot bind
        return False
    except database_errors(engine) as exc:
        if _refused_rows(exc):
            return False
        raise
    return True


def ship_rows(engine: Database, data: bytes, *, batch: int) -> ParsedSegment:
    """Decode the segment line by line and insert the rows that decode (the careful path)."""
    parsed = parse_segment(data)
    sql, order = _driver_insert(engine)
    params = driver_params(parsed.rows, order)
    if params:
        with engine.begin() as conn:
            for start in range(0, len(params), batch):
                conn.exec_driver_sql(sql, params[start : start + batch])
    return parsed


def ship_segment(engine: Database, path: Path, *, batch: int) -> ShipResult | None:
    """Insert one segment in one transaction, then delete it. ``None`` if it is already gone."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None  # shipped by someone else (the supervisor's ship_orphans) meanwhile
    lines, torn = split_segment(data)
    fast = engine.dialect.name == "sqlite" and bool(lines) and ship_values(engine, lines)
    if fast or (lines and ship_bulk(engine, lines, batch=batch)):
        result = ShipResult(len(lines), 0, torn)
    else:
        parsed = ship_rows(engine, data, batch=batch)
        result = ShipResult(len(parsed.rows), parsed.corrupt, parsed.torn_tail)
    path.unlink(missing_ok=True)  # only after the commit above
    if result.torn_tail:
        logger.warning(
            "segment %s had a torn last line (ignored: its request got no response)", path
        )
    if result.corrupt:
        logger.error(
            "segment %s had %d undecodable rows",
            path,
            result.corrupt,
            extra={"fields": {"event": "request_log_rows_lost", "rows": result.corrupt}},
        )
    return result


def _retrying(
    deadline: float, breaker: CircuitBreaker, errors: tuple[type[Exception], ...]
) -> Retrying:
    # Idempotent inserts, so retrying an ambiguous failure is safe; never past the deadline,
    # and not once the breaker has opened (it decides when to probe again).
    return Retrying(
        stop=stop_after_attempt(3) | stop_after_delay(max(0.0, deadline - time.monotonic())),
        wait=wait_jittered(multiplier=0.05, max=1.0),
        retry=retry_if_exception(lambda e: isinstance(e, errors) and breaker.is_closed),
        reraise=True,
    )


def ship_directory(
    engine: Database,
    directory: Path,
    account: SpoolAccount,
    breaker: CircuitBreaker,
    *,
    batch: int,
    deadline: float,
) -> bool:
    """Ship closed segments oldest first until done, the breaker opens or the deadline passes.

    Returns True when nothing closed is left. Stops at the first failure to keep the order;
    every segment still waiting then counts as spilled (once).
    """
    paths = closed_segments(directory)
    errors = database_errors(engine)
    for path in paths:
        if path.name not in account.segments:  # left by an earlier incarnation
            account.add_closed(path.name, _rows_in(path), _size(path), counted=False)
    for index, path in enumerate(paths):
        if time.monotonic() >= deadline:
            return False
        if not breaker.allow():
            _spill(account, paths[index:])
            return False
        try:
            for attempt in _retrying(deadline, breaker, errors):
                with attempt:
                    try:
                        result = ship_segment(engine, path, batch=batch)
                    except errors as exc:
                        breaker.record_failure(exc)
                        raise
        except errors as exc:
            _spill(account, paths[index:])
            logger.warning(
                "shipping %s failed; it stays on disk: %s",
                path.name,
                exc,
                extra={"fields": {"event": "request_log_ship_failed", "segment": path.name}},
            )
            return False
        breaker.record_success()
        lost = result.corrupt if result is not None else 0
        account.remove_closed(path.name, committed=result is not None, lost=lost)
    return True


def _spill(account: SpoolAccount, paths: list[Path]) -> None:
    """Count segments' rows as spilled the first time they could not be shipped."""
    with account.lock:
        for path in paths:
            if path.name not in account.spilled and path.name in account.segments:
                account.spilled.add(path.name)
                account.rows_spilled += account.segments[path.name][0]


def _rows_in(path: Path) -> int:
    try:
        return count_rows(path.read_bytes())
    except FileNotFoundError:
        return 0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def thread_nice() -> int:
    """The calling thread's nice value (Linux keeps one per thread)."""
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def set_thread_nice(nice: int) -> bool:
    """Set the calling thread's nice value; False where that is not possible (not Linux, or
    a lower value without the privilege to raise a priority)."""
    if sys.platform != "linux":
        return False
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except OSError:
        return False
    return True


class Shipper:
    """A daemon thread: every ``interval_s`` rotate the segment if due and ship closed ones."""

    def __init__(
        self,
        engine: Database,
        writer: SegmentWriter,
        account: SpoolAccount,
        breaker: CircuitBreaker,
        *,
        batch: int,
        interval_s: float,
        nice: int = 0,
    ) -> None:
        self.nice = nice
        self.engine = engine
        self.writer = writer
        self.account = account
        self.breaker = breaker
        self.batch = batch
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="falcon-shipper", daemon=True)
        self._final_deadline = 0.0
        self.drained = threading.Event()

    def start(self) -> None:
        claim_abandoned(self.writer.directory)  # a killed earlier incarnation's open segment
        self._thread.start()

    def _run(self) -> None:
        # Below the event loop, so the kernel runs a waiting request first; back at the base
        # priority while a backlog builds up, so rows never pile up towards the disk budget.
        base = thread_nice() if sys.platform == "linux" else 0
        low = max(base, self.nice)
        lowered = low != base and set_thread_nice(low)
        can_raise = True
        while not self._stop.is_set():
            self._tick(time.monotonic() + TICK_BUDGET_S)
            backlog = len(self.account.segments)
            if lowered and can_raise and backlog >= BACKLOG_SEGMENTS:
                if set_thread_nice(base):
                    lowered = False
                else:
                    can_raise = False
                    logger.warning(
                        "request-log shipper is %d segments behind and cannot raise its "
                        "priority back (no CAP_SYS_NICE); set FALCON_REQUEST_LOG_SHIPPER_NICE=0",
                        backlog,
                    )
            elif not lowered and backlog == 0 and low != base:
                lowered = set_thread_nice(low)
            self._stop.wait(self.interval_s)
        # Shutdown: close the current segment and ship everything we can before the deadline.
        set_thread_nice(base)
        self.writer.rotate()
        while time.monotonic() < self._final_deadline:
            if self._tick(self._final_deadline):
                self.drained.set()
                return
            time.sleep(min(0.2, max(0.0, self._final_deadline - time.monotonic())))

    def _tick(self, deadline: float) -> bool:
        try:
            self.writer.rotate_if_due(time.monotonic())
            return ship_directory(
                self.engine,
                self.writer.directory,
                self.account,
                self.breaker,
                batch=self.batch,
                deadline=deadline,
            )
        except Exception:  # the shipper must never die; the next tick retries
            logger.exception("request-log shipper tick failed")
            return False

    def stop(self, timeout_s: float) -> bool:
        """Stop, shipping what is left for up to ``timeout_s``; True when the spool is empty."""
        self._final_deadline = time.monotonic() + timeout_s
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s + 1.0)
        return self.drained.is_set()
