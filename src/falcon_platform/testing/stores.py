"""In-memory fakes of the store protocols, for pure and component tests of other parts.

    stores = fake_stores()                       # a real ``Stores`` around fakes
    app = create_app(settings, model=model, stores=stores)
    ...
    assert [r.request_id for r in stores.request_log.rows] == [...]   # FakeRequestLog
    stores.breakers["redis"].record_failure()    # drive degraded() like a Redis outage

Integration tests use the real backends (``build_stores``) and real servers
(``falcon_platform.testing.servers``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from falcon_platform.errors import OverloadedError
from falcon_platform.stores.base import RequestLogCounters, RequestLogRecord, StoredResponse
from falcon_platform.stores.breaker import BreakerPolicy, CircuitBreaker
from falcon_platform.stores.factory import Stores


class FakeResponseCache:
    """A dict; ``fail=True`` makes it behave like a bypassed cache (misses, stores nothing)."""

    backend = "memory"
    dependency: str | None = None

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.fail = False
        self.gets = 0
        self.sets = 0

    async def get(self, key: str) -> bytes | None:
        self.gets += 1
        return None if self.fail else self.data.get(key)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [await self.get(key) for key in keys]

    async def set(self, key: str, value: bytes) -> None:
        self.sets += 1
        if not self.fail:
            self.data[key] = value


class FakeIdempotencyStore:
    """Insert-if-absent over a dict, atomic under asyncio (no await between check and set)."""

    backend = "sqlite"
    dependency: str | None = None

    def __init__(self) -> None:
        self.data: dict[str, StoredResponse] = {}

    async def get(self, key: str) -> StoredResponse | None:
        return self.data.get(key)

    async def put(self, key: str, response: StoredResponse) -> StoredResponse:
        return self.data.setdefault(key, response)


class FakeRequestLog:
    """Keeps appended rows in ``rows``; ``full=True`` makes ``append`` refuse like a spent disk."""

    backend = "sqlite"
    dependency: str | None = None

    def __init__(self) -> None:
        self.rows: list[RequestLogRecord] = []
        self.full = False
        self.started = False
        self.closed = False

    def append(self, record: RequestLogRecord) -> None:
        if self.full:
            raise OverloadedError(
                "request-log disk budget exhausted (fake); free disk or raise "
                "FALCON_REQUEST_LOG_DISK_BUDGET_MB",
                retry_after_s=5,
            )
        self.rows.append(replace(record))

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.closed = True

    def counters(self) -> RequestLogCounters:
        return RequestLogCounters(rows_written=len(self.rows), disk_budget_bytes=1 << 30)


class FakeStores(Stores):
    """A ``Stores`` whose parts are the fakes above, typed so tests can reach them."""

    cache: FakeResponseCache
    idempotency: FakeIdempotencyStore
    request_log: FakeRequestLog

    def __init__(self, *, breakers: dict[str, CircuitBreaker] | None = None) -> None:
        super().__init__(
            cache=FakeResponseCache(),
            idempotency=FakeIdempotencyStore(),
            request_log=FakeRequestLog(),
            breakers=breakers,
            shutdown_grace_s=5.0,
        )


def fake_stores(*, with_redis_breaker: bool = True) -> FakeStores:
    """Fakes plus a "redis" breaker (threshold 1, so one ``record_failure()`` degrades)."""
    breakers = (
        {"redis": CircuitBreaker("redis", BreakerPolicy(failure_threshold=1, reset_timeout_s=3600))}
        if with_redis_breaker
        else {}
    )
    return FakeStores(breakers=breakers)


def sample_record(i: int, *, worker: str = "w0", status_code: int = 200) -> RequestLogRecord:
    """A plausible request-log row with request id ``req-<i:06d>``."""
    return RequestLogRecord(
        request_id=f"req-{i:06d}",
        ts=1_767_225_600.0 + i,
        worker=worker,
        release="r1",
        model_version="v1",
        endpoint="/infer",
        status_code=status_code,
        latency_ms=1.5,
        input_hash="0" * 64,
        input_length=12,
        prediction="positive",
        confidence=0.9,
    )


def varied_records() -> list[RequestLogRecord]:
    """Rows that exercise every column's edge: unicode input text, empty optionals, strings
    over their column length, both booleans set, an error row."""
    base = sample_record(0)
    return [
        base,
        replace(base, request_id="req-unicode", input_text='naïve café — 日本語 "quoted"\n'),
        replace(
            base,
            request_id="req-empty",
            input_hash=None,
            input_length=None,
            prediction=None,
            confidence=None,
            client_id=None,
        ),
        replace(
            base,
            request_id="req-long",
            prediction="p" * 500,
            error_type="e" * 500,
            client_id="c" * 100,
        ),
        replace(base, request_id="req-hits", cache_hit=True, idempotency_hit=True),
        replace(
            base,
            request_id="req-error",
            status_code=504,
            error_type="timeout",
            latency_ms=5000.25,
            ts=1_767_225_600.123456,
        ),
    ]
