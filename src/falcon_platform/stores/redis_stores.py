"""Redis-backed response cache and idempotency keys, behind the "redis" circuit breaker.

    client = make_redis_client(settings)         # pooled; every socket wait <= redis_timeout_ms
    pipeline = TickPipeline(client, CircuitBreaker("redis"), timeout_s=0.05)
    cache = RedisCache(pipeline, ttl_s=600, local=MemoryCache(...))   # local: optional L1
    idem = RedisIdempotencyStore(pipeline, fallback=sqlite_store, ttl_s=86_400)

Both share one :class:`~falcon_platform.stores.redis_pipeline.TickPipeline`: the lookups made
during one pass of the event loop go to Redis as one ``MGET``, cache fills ride the next round
trip off the response path, and an idempotency claim (``SET NX`` + ``GET``) is pipelined with
them. Neither ever raises on a Redis failure: the cache answers a miss and stores nothing; the
idempotency store answers from the embedded SQLite store on this machine. While the breaker is
open Redis is not called at all (``Stores.degraded()`` names "redis"). Nothing is retried:
a lookup that fails is a miss (or a fallback read), and one round trip is one breaker event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import orjson
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from falcon_platform.config.settings import Settings
from falcon_platform.stores.base import IdempotencyStore, StoredResponse
from falcon_platform.stores.memory_cache import MemoryCache
from falcon_platform.stores.redis_pipeline import TickPipeline

logger = logging.getLogger("falcon.stores.redis")

CACHE_PREFIX = "falcon:cache:"
IDEMPOTENCY_PREFIX = "falcon:idem:"


def make_redis_client(settings: Settings) -> Redis:
    """A pooled client: pool of ``redis_pool_size``, every socket wait <= ``redis_timeout_ms``.

    redis-py's own retries are off: the breaker decides.
    """
    assert settings.redis_url is not None
    timeout = settings.redis_timeout_ms / 1000
    pool = BlockingConnectionPool.from_url(
        settings.redis_url.get_secret_value(),
        max_connections=settings.redis_pool_size,
        timeout=timeout,  # waiting for a free pooled connection is bounded too
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )
    return Redis(connection_pool=pool, retry=Retry(NoBackoff(), 0))


class RedisCache:
    """The response cache in Redis, read and written through the loop's :class:`TickPipeline`.

    A small in-process first level (``local``, optional) answers repeated texts without a
    round trip. It is safe because a cache key names the model version and the text's hash:
    the value under a key never changes, so a local copy is never stale (it only expires
    with the same TTL as Redis's copy)."""

    backend = "redis"

    def __init__(
        self, pipeline: TickPipeline, *, ttl_s: float, local: MemoryCache | None = None
    ) -> None:
        self.pipeline = pipeline
        self.breaker = pipeline.breaker
        self.dependency = pipeline.breaker.name
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.local = local if local is not None and local.enabled else None

    async def get(self, key: str) -> bytes | None:
        local = self.local
        if local is not None and (value := local.lookup(key)) is not None:
            return value
        _, value = await self.pipeline.get(CACHE_PREFIX + key)
        if value is not None and local is not None:
            local.store(key, value)
        return value

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """All the keys in one round trip (they join the same tick's MGET)."""
        futures = [self.pipeline.get(CACHE_PREFIX + key) for key in keys]
        return [(await future)[1] for future in futures]

    async def set(self, key: str, value: bytes) -> None:
        if self.local is not None:
            self.local.store(key, value)
        self.pipeline.set_later(CACHE_PREFIX + key, value, px=self.ttl_ms)

    def describe(self) -> dict[str, Any]:
        details: dict[str, Any] = {
            "ttl_ms": self.ttl_ms,
            "timeout_ms": self.pipeline.timeout_s * 1000,
            "bypassed": not self.breaker.is_closed,
            **self.pipeline.describe(),
        }
        if self.local is not None:
            details["local"] = self.local.describe()
        return details


def encode_stored(response: StoredResponse) -> bytes:
    head = orjson.dumps(
        {"h": response.body_hash, "s": response.status_code, "c": response.created_at}
    )
    return head + b"\n" + response.body


def decode_stored(value: bytes) -> StoredResponse:
    head, _, body = value.partition(b"\n")
    meta = orjson.loads(head)
    return StoredResponse(
        body_hash=meta["h"], status_code=meta["s"], body=body, created_at=meta["c"]
    )


class RedisIdempotencyStore:
    backend = "redis"

    def __init__(
        self,
        pipeline: TickPipeline,
        *,
        fallback: IdempotencyStore,
        ttl_s: float,
    ) -> None:
        self.pipeline = pipeline
        self.breaker = pipeline.breaker
        self.dependency = pipeline.breaker.name
        self.fallback = fallback
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.ttl_s = ttl_s
        # Keys stored in the fallback during an outage stay valid for their TTL: until then a
        # Redis miss also looks there, so a replay after recovery still finds its response.
        self._fallback_live_until = 0.0

    async def get(self, key: str) -> StoredResponse | None:
        ok, value = await self.pipeline.get(IDEMPOTENCY_PREFIX + key)
        if value is not None:
            return decode_stored(value)
        if not ok or time.monotonic() < self._fallback_live_until:
            return await self.fallback.get(key)
        return None

    async def put(self, key: str, response: StoredResponse) -> StoredResponse:
        # SET NX decides the race atomically (awaited: the answer depends on it); the loser
        # reads the winner's response from the GET pipelined right behind it.
        ok, existing = await self.pipeline.claim(
            IDEMPOTENCY_PREFIX + key, encode_stored(response), px=self.ttl_ms
        )
        if not ok:
            self._fallback_live_until = time.monotonic() + self.ttl_s
            return await self.fallback.put(key, response)
        return decode_stored(existing) if existing is not None else response

    def describe(self) -> dict[str, Any]:
        return {
            "ttl_ms": self.ttl_ms,
            "timeout_ms": self.pipeline.timeout_s * 1000,
            "fallback": self.fallback.backend,
            "using_fallback": not self.breaker.is_closed,
        }
