"""The stores' narrow interfaces: response cache, idempotency keys, request log.

Embedded backends (in-process LRU, SQLite) and production ones (Redis,
PostgreSQL) implement these; the serving layer depends on nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class RequestLogRecord:
    """One row per HTTP inference request (a batch request is one row)."""

    request_id: str
    ts: float  # epoch seconds, UTC, when the request arrived
    worker: str
    release: str
    model_version: str
    endpoint: str
    status_code: int
    latency_ms: float
    input_hash: str | None = None
    input_length: int | None = None
    input_text: str | None = None  # only when FALCON_LOG_INPUTS=true
    prediction: str | None = None
    confidence: float | None = None
    cache_hit: bool = False
    idempotency_hit: bool = False
    client_id: str | None = None
    error_type: str | None = None


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """What an idempotency key remembers: the request's body hash and the response."""

    body_hash: str
    status_code: int
    body: bytes
    created_at: float


class ResponseCache(Protocol):
    backend: str  # "memory" | "redis"

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes) -> None: ...


class IdempotencyStore(Protocol):
    backend: str  # "sqlite" | "redis"

    async def get(self, key: str) -> StoredResponse | None: ...

    async def put(self, key: str, response: StoredResponse) -> StoredResponse:
        """Store unless present; return what is stored now (the earlier one on a race)."""
        ...


class RequestLogSink(Protocol):
    backend: str  # "sqlite" | "postgresql"

    def append(self, record: RequestLogRecord) -> None:
        """Durably hand the row off (a local segment write) before the response is sent."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None:
        """Flush and ship what is pending (bounded by the shutdown grace)."""
        ...
