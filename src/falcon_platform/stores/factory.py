"""Build the stores a worker uses from its settings: embedded by default, Redis/PostgreSQL by URL.

The serving layer needs exactly this::

    stores = build_stores(settings)      # no I/O yet
    await stores.start()                 # schema check/upgrade, ship leftovers, start the shipper
    hit = await stores.cache.get(key)    # never raises on a dependency failure
    stores.request_log.append(record)    # sync, before the response; OverloadedError if disk full
    stores.degraded()                    # frozenset({"redis"}) while Redis is away
    await stores.close()                 # flush + ship, bounded by settings.shutdown_grace_s

==========================  ===========================  ==========================================
store                       embedded (no URL)            production
==========================  ===========================  ==========================================
cache                       in-process TTL, entries+bytes Redis (FALCON_REDIS_URL); bypassed if down
idempotency                 SQLite (WAL) <data>/falcon.db Redis; falls back to the SQLite store
request_log                 segments -> SQLite            segments -> PostgreSQL (FALCON_DATABASE_URL)
==========================  ===========================  ==========================================
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from falcon_platform.config.settings import Settings
from falcon_platform.stores.base import (
    CountingSink,
    IdempotencyStore,
    RequestLogCounters,
    RequestLogSink,
    ResponseCache,
    StoreStats,
)
from falcon_platform.stores.breaker import CircuitBreaker

if TYPE_CHECKING:  # redis is imported only when a worker uses it
    from falcon_platform.stores.redis_pipeline import TickPipeline

logger = logging.getLogger("falcon.stores")

Hook = Callable[[], Awaitable[None]]


_NONE_DEGRADED: frozenset[str] = frozenset()


class Stores:
    """The three stores plus their breakers; what ``create_app(settings, stores=...)`` takes.

    Tests build one from fakes: ``falcon_platform.testing.stores.fake_stores()``.
    """

    def __init__(
        self,
        *,
        cache: ResponseCache,
        idempotency: IdempotencyStore,
        request_log: RequestLogSink,
        breakers: Mapping[str, CircuitBreaker] | None = None,
        shutdown_grace_s: float = 30.0,
        on_start: tuple[Hook, ...] = (),
        on_close: tuple[Hook, ...] = (),
        redis_pipeline: TickPipeline | None = None,
    ) -> None:
        self.cache = cache
        self.idempotency = idempotency
        self.request_log = request_log
        self.breakers: dict[str, CircuitBreaker] = dict(breakers or {})
        self.shutdown_grace_s = shutdown_grace_s
        self._on_start = on_start
        self._on_close = on_close
        self.redis_pipeline = redis_pipeline

    async def start(self) -> None:
        """Check/upgrade the schema, ship what an earlier incarnation left, start the shipper.

        Raises ``SchemaBehindError`` when an external database needs ``falcon db upgrade``.
        """
        for hook in self._on_start:
            await hook()
        await self.request_log.start()

    async def close(self) -> None:
        """Flush and ship pending rows, bounded by ``shutdown_grace_s``; then close clients.

        Rows that could not be shipped in time stay in the spool and are shipped by the next
        start (or by the supervisor's ``ship_orphans``): bounded, never lost.
        """
        try:
            await asyncio.wait_for(self.request_log.close(), timeout=self.shutdown_grace_s)
        except TimeoutError:
            logger.warning(
                "request log not fully shipped within %.1fs; rows stay in the spool",
                self.shutdown_grace_s,
                extra={"fields": {"event": "request_log_close_timeout"}},
            )
        for hook in self._on_close:
            try:
                await hook()
            except Exception:  # closing a broken client must not fail shutdown
                logger.exception("closing a store client failed")

    def degraded(self) -> frozenset[str]:
        """Dependencies whose breaker is not closed right now, e.g. ``frozenset({"redis"})``."""
        for breaker in self.breakers.values():  # asked per request: no set unless one is open
            if not breaker.is_closed:
                return frozenset(name for name, b in self.breakers.items() if not b.is_closed)
        return _NONE_DEGRADED

    def status(self) -> dict[str, dict[str, Any]]:
        """Per store: backend, state ("ok" | "degraded"), details (for /readyz, falcon status)."""
        down = self.degraded()
        out: dict[str, dict[str, Any]] = {}
        for name, store in (
            ("cache", self.cache),
            ("idempotency", self.idempotency),
            ("request_log", self.request_log),
        ):
            dependency = getattr(store, "dependency", None)
            describe = getattr(store, "describe", None)
            details: dict[str, Any] = describe() if callable(describe) else {}
            if dependency is not None and dependency in self.breakers:
                details["breaker"] = self.breakers[dependency].state.value
            out[name] = {
                "backend": store.backend,
                "state": "degraded" if dependency in down else "ok",
                "details": details,
            }
        return out

    def stats(self) -> StoreStats:
        """Plain numbers for the metrics collector (read at scrape time)."""
        c = (
            self.request_log.counters()
            if isinstance(self.request_log, CountingSink)
            else RequestLogCounters()
        )
        return StoreStats(
            rows_written=c.rows_written,
            rows_pending=c.rows_pending,
            rows_spilled=c.rows_spilled,
            rows_lost=c.rows_lost,
            disk_bytes=c.disk_bytes,
            disk_budget_bytes=c.disk_budget_bytes,
            breaker_states={name: b.state.gauge for name, b in self.breakers.items()},
            breaker_transitions={
                (name, to_state): count
                for name, b in self.breakers.items()
                for to_state, count in b.transitions.items()
            },
            redis_round_trips=pipe.round_trips if (pipe := self.redis_pipeline) else None,
            redis_calls=pipe.calls if pipe else None,
        )


def build_stores(settings: Settings) -> Stores:
    """Choose and wire the backends from ``settings`` (no I/O until ``start()``).

    ``start()`` runs ``ensure_schema`` (embedded SQLite upgraded; an external database whose
    schema is behind raises ``SchemaBehindError``) before the shipper starts.
    """
    from falcon_platform.errors import DependencyError, SchemaBehindError
    from falcon_platform.stores.breaker import BreakerPolicy
    from falcon_platform.stores.database import ensure_schema, local_sqlite_path
    from falcon_platform.stores.memory_cache import MemoryCache
    from falcon_platform.stores.request_log import SpoolingRequestLog, database_dependency
    from falcon_platform.stores.sqlite_db import SQLiteDB
    from falcon_platform.stores.sqlite_idempotency import SQLiteIdempotencyStore

    policy = BreakerPolicy(settings.breaker_failure_threshold, settings.breaker_reset_timeout_s)
    sqlite_breaker = CircuitBreaker("sqlite", policy)
    breakers: dict[str, CircuitBreaker] = {"sqlite": sqlite_breaker}
    # The idempotency fallback's SQLite gets a short busy timeout: it sits on the request path.
    local = SQLiteIdempotencyStore(
        SQLiteDB(local_sqlite_path(settings), timeout_s=1.0),
        ttl_s=settings.idempotency_ttl_s,
        breaker=sqlite_breaker,
    )
    db_name = database_dependency(settings)
    db_breaker = breakers.setdefault(db_name, CircuitBreaker(db_name, policy))
    request_log = SpoolingRequestLog(settings, breaker=db_breaker)

    async def prepare_schema() -> None:
        try:
            await asyncio.to_thread(ensure_schema, settings)
        except SchemaBehindError:
            raise  # the operator must run `falcon db upgrade`: refuse to start
        except DependencyError as exc:
            # Unreachable at start: serve anyway (rows wait on disk), like an outage later would.
            db_breaker.record_failure(exc)
            logger.error(
                "request-log database unreachable at start; rows stay on disk until it is back: %s",
                exc.detail,
                extra={"fields": {"event": "database_unreachable_at_start", "dependency": db_name}},
            )

    async def close_local() -> None:
        await asyncio.to_thread(local.close)

    on_start: list[Hook] = [prepare_schema]
    on_close: list[Hook] = [close_local]
    cache: ResponseCache
    idempotency: IdempotencyStore
    pipeline: TickPipeline | None = None
    if settings.redis_url is None:
        cache = MemoryCache(
            max_entries=settings.cache_max_entries,
            max_bytes=settings.cache_max_bytes,
            ttl_s=settings.cache_ttl_s,
        )
        idempotency = local
    else:
        from falcon_platform.stores.redis_pipeline import TickPipeline
        from falcon_platform.stores.redis_stores import (
            RedisCache,
            RedisIdempotencyStore,
            make_redis_client,
        )

        client = make_redis_client(settings)
        redis_breaker = CircuitBreaker("redis", policy)
        breakers["redis"] = redis_breaker
        pipeline = TickPipeline(
            client,
            redis_breaker,
            timeout_s=settings.redis_timeout_ms / 1000,
            max_inflight=min(4, settings.redis_pool_size),
        )
        local_cache = MemoryCache(
            max_entries=settings.redis_local_cache_entries,
            max_bytes=settings.cache_max_bytes,
            ttl_s=settings.cache_ttl_s,
        )
        cache = RedisCache(pipeline, ttl_s=settings.cache_ttl_s, local=local_cache)
        idempotency = RedisIdempotencyStore(
            pipeline, fallback=local, ttl_s=settings.idempotency_ttl_s
        )

        probing: list[asyncio.Task[None]] = []

        async def close_redis() -> None:
            for task in probing:
                task.cancel()
            await asyncio.gather(*probing, return_exceptions=True)
            await pipeline.drain(timeout_s=min(1.0, settings.shutdown_grace_s))
            await pipeline.close()
            await client.aclose()

        async def warm_redis() -> None:
            await pipeline.warm()
            if settings.redis_probe_interval_s > 0:
                probing.append(
                    asyncio.get_running_loop().create_task(
                        pipeline.keep_probing(settings.redis_probe_interval_s),
                        name="falcon-redis-probe",
                    )
                )

        on_close.insert(0, close_redis)
        on_start.append(warm_redis)

    return Stores(
        cache=cache,
        idempotency=idempotency,
        request_log=request_log,
        breakers=breakers,
        shutdown_grace_s=settings.shutdown_grace_s,
        on_start=tuple(on_start),
        on_close=tuple(on_close),
        redis_pipeline=pipeline,
    )
