"""The request-log sink: spool to local segments on the request path, ship to the database off it.

    log = SpoolingRequestLog(settings, breaker=CircuitBreaker("postgresql"))
    await log.start()        # ships what an earlier incarnation of this worker left, starts the shipper
    log.append(record)       # one os.write; OverloadedError (503) when the disk budget is spent
    await log.append_in_tick(record)   # the serving path: one os.write for the whole loop tick
    await log.close()        # rotate and ship what is left, bounded by the shutdown grace

    ship_orphans(settings, "w3")   # the supervisor, after worker w3 died; or for every worker dir

Disk budget: ``request_log_disk_budget_mb`` is for the machine; each worker gets an equal
share (budget / worker count), so N workers together never exceed it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from falcon_platform.config.settings import Settings
from falcon_platform.errors import NotFoundError
from falcon_platform.stores.base import RequestLogCounters, RequestLogRecord
from falcon_platform.stores.breaker import BreakerPolicy, CircuitBreaker
from falcon_platform.stores.database import (
    database_url,
    is_embedded,
    redacted,
    shipping_database,
)
from falcon_platform.stores.segments import (
    SegmentWriter,
    SpoolAccount,
    claim_abandoned,
    encode_record,
)
from falcon_platform.stores.shipper import Shipper, ship_directory

if TYPE_CHECKING:
    from falcon_platform.stores.shipper import Database

SHIPPER_SQLITE_CACHE_KIB = 256  # SQLite's default is 2 MiB per connection

SEGMENT_MAX_BYTES = 4 << 20  # rotate at 4 MiB even when traffic never pauses


def disk_budget_share(settings: Settings) -> int:
    """This worker's share of the machine's request-log disk budget, in bytes."""
    return settings.request_log_disk_budget_mb * 1_048_576 // max(1, settings.worker_count)


def database_dependency(settings: Settings) -> str:
    """The breaker/degraded name of the request-log database: "postgresql" or "sqlite"."""
    return "sqlite" if is_embedded(settings) else "postgresql"


class SpoolingRequestLog:
    """Implements ``RequestLogSink`` and ``CountingSink``."""

    def __init__(self, settings: Settings, *, breaker: CircuitBreaker | None = None) -> None:
        self.settings = settings
        self.backend = database_dependency(settings)
        self.breaker = breaker or CircuitBreaker(self.backend)
        self.dependency = self.breaker.name
        self.directory = settings.spool_dir / settings.worker_id
        self.account = SpoolAccount(budget_bytes=disk_budget_share(settings))
        self.writer = SegmentWriter(
            self.directory,
            self.account,
            max_bytes=min(SEGMENT_MAX_BYTES, max(4096, self.account.budget_bytes // 8)),
            max_age_s=settings.request_log_flush_interval_ms / 1000,
        )
        self._engine: Database | None = None
        self._shipper: Shipper | None = None
        self._lines: list[bytes] = []  # rows of this loop tick, written together
        self._queued_bytes = 0
        self._tick: asyncio.Future[None] | None = None

    def append(self, record: RequestLogRecord) -> None:
        """Write the row to the current segment (no fsync); raises ``OverloadedError`` when full."""
        self.writer.append(encode_record(record))

    def append_in_tick(self, record: RequestLogRecord) -> asyncio.Future[None]:
        """Queue the row for this loop tick's one write; await the result before responding.

        Every request of a tick awaits the same future, resolved once the tick's rows are
        in the segment (one ``os.write`` instead of one per request), or failed with the
        write's error. ``OverloadedError`` (disk budget) is raised here, at once."""
        return self.append_line_in_tick(encode_record(record))

    def append_line_in_tick(self, line: bytes) -> asyncio.Future[None]:
        """:meth:`append_in_tick` of a row already encoded (``segments.encode_row``)."""
        self.writer.check_room(len(line), self._queued_bytes)
        self._lines.append(line)
        self._queued_bytes += len(line)
        tick = self._tick
        if tick is None:
            loop = asyncio.get_running_loop()
            tick = self._tick = loop.create_future()
            loop.call_soon(self.write_tick)
        return tick

    def write_tick(self) -> None:
        """Write the queued rows now (the loop calls it once per tick; close() too)."""
        lines, tick = self._lines, self._tick
        self._lines, self._queued_bytes, self._tick = [], 0, None
        if not lines:
            return
        try:
            self.writer.append_many(lines)
        except Exception as exc:
            if tick is not None and not tick.done():
                tick.set_exception(exc)
            return
        if tick is not None and not tick.done():
            tick.set_result(None)

    async def start(self) -> None:
        # The shipper only appends: a small page cache on its own connection (the supervisor
        # and console read the same file through theirs, with SQLite's default 2 MiB).
        self._engine = shipping_database(self.settings, sqlite_cache_kib=SHIPPER_SQLITE_CACHE_KIB)
        self._shipper = Shipper(
            self._engine,
            self.writer,
            self.account,
            self.breaker,
            batch=self.settings.request_log_ship_batch,
            interval_s=self.settings.request_log_flush_interval_ms / 1000,
            nice=self.settings.request_log_shipper_nice,
        )
        await asyncio.to_thread(self._shipper.start)

    async def close(self) -> None:
        self.write_tick()
        budget = max(0.5, self.settings.shutdown_grace_s - 1.0)
        if self._shipper is not None:
            await asyncio.to_thread(self._shipper.stop, budget)
        else:
            self.writer.close()
        if self._engine is not None:
            self._engine.dispose()

    def counters(self) -> RequestLogCounters:
        a = self.account
        return RequestLogCounters(
            rows_written=a.rows_written,
            rows_pending=a.rows_pending,
            rows_spilled=a.rows_spilled,
            rows_lost=a.rows_lost,
            disk_bytes=a.disk_bytes,
            disk_budget_bytes=a.budget_bytes,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "database": redacted(database_url(self.settings)),
            "spool_dir": str(self.directory),
            "rows_pending": self.account.rows_pending,
            "disk_bytes": self.account.disk_bytes,
            "disk_budget_bytes": self.account.budget_bytes,
        }


@dataclass(frozen=True, slots=True)
class OrphanReport:
    rows_shipped: int
    segments_left: int  # still on disk (database away or deadline reached)


def ship_orphans(
    settings: Settings, worker_id: str | None = None, *, timeout_s: float = 30.0
) -> OrphanReport:
    """Ship segments left by a dead worker (``worker_id``) or by every worker dir; blocking.

    Safe to run while live workers ship their own spools: a live worker's open segment is
    ``flock``-ed and never taken, and inserts are idempotent by request id.
    """
    every = sorted(p for p in settings.spool_dir.glob("*") if p.is_dir())
    if worker_id is not None and settings.spool_dir / worker_id not in every:
        have = ", ".join(p.name for p in every) or "none"
        raise NotFoundError(
            f"no spool for worker {worker_id!r} under {settings.spool_dir} (workers with a "
            f"spool: {have}); `falcon status` lists the workers, `falcon db ship` ships them all"
        )
    dirs = [settings.spool_dir / worker_id] if worker_id is not None else every
    engine = shipping_database(settings, pool_size=1)
    breaker = CircuitBreaker(database_dependency(settings), BreakerPolicy(failure_threshold=1))
    deadline = time.monotonic() + timeout_s
    shipped = left = 0
    try:
        for directory in dirs:
            claim_abandoned(directory)
            account = SpoolAccount(budget_bytes=disk_budget_share(settings))
            ship_directory(
                engine,
                directory,
                account,
                breaker,
                batch=settings.request_log_ship_batch,
                deadline=deadline,
            )
            shipped += account.rows_written
            left += len(account.segments)
    finally:
        engine.dispose()
    return OrphanReport(shipped, left)
