"""Redis-backed response cache and idempotency keys, behind the "redis" circuit breaker.

    client = make_redis_client(settings)             # pooled, every call bounded by redis_timeout_ms
    breaker = CircuitBreaker("redis")
    cache = RedisCache(client, breaker, ttl_s=600, timeout_s=0.05)
    idem = RedisIdempotencyStore(client, breaker, fallback=sqlite_store, ttl_s=86_400, timeout_s=0.05)

Neither ever raises on a Redis failure: the cache answers a miss and stores nothing; the
idempotency store answers from the embedded SQLite store on this machine. While the
breaker is open Redis is not called at all (``Stores.degraded()`` names "redis").
Only reads are retried (tenacity, jittered), and never past the call's time budget.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, stop_after_delay
from tenacity import wait_random_exponential as wait_jittered

from falcon_platform.config.settings import Settings
from falcon_platform.stores.base import IdempotencyStore, StoredResponse
from falcon_platform.stores.breaker import CircuitBreaker

logger = logging.getLogger("falcon.stores.redis")

T = TypeVar("T")
CACHE_PREFIX = "falcon:cache:"
IDEMPOTENCY_PREFIX = "falcon:idem:"
_FAILURES = (RedisError, OSError, TimeoutError)


def make_redis_client(settings: Settings) -> Redis:
    """A pooled client: pool of ``redis_pool_size``, every socket wait <= ``redis_timeout_ms``.

    redis-py's own retries are off: the breaker and our bounded retries decide.
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


async def warm_pool(client: Redis, connections: int, *, within_s: float = 3.0) -> int:
    """Open up to ``connections`` pooled connections at start, off the request path.

    A cold pool opening many connections at once under load can exceed the per-call
    timeout; opening them here keeps the first requests from tripping the breaker (and
    from splitting idempotency keys between Redis and the fallback). Returns how many
    pings succeeded; Redis being down here is not an error (the breaker handles it later).
    """
    deadline = time.monotonic() + within_s
    ok = 0
    while ok < connections and time.monotonic() < deadline:
        batch = min(8, connections - ok)
        results = await asyncio.gather(
            *(_ping(client) for _ in range(batch)), return_exceptions=True
        )
        succeeded = sum(1 for r in results if r is True)
        if succeeded == 0:
            await asyncio.sleep(0.05)
        ok += succeeded
    return ok


async def _ping(client: Redis) -> bool:
    # Hold several connections at once so the pool opens new ones instead of reusing one.
    async with client.client() as single:
        await single.ping()
        await asyncio.sleep(0.01)
    return True


class _Guarded:
    """Runs one Redis call under the breaker and a hard time budget."""

    def __init__(self, breaker: CircuitBreaker, timeout_s: float) -> None:
        self.breaker = breaker
        self.timeout_s = timeout_s
        self.dependency = breaker.name

    async def call(
        self, op: Callable[[], Awaitable[T]], *, idempotent: bool
    ) -> tuple[bool, T | None]:
        """(ok, result). Never raises for a Redis failure; records it on the breaker."""
        if not self.breaker.allow():
            return False, None
        deadline = time.monotonic() + self.timeout_s
        try:
            async with asyncio.timeout(self.timeout_s):
                result: T | None = None
                async for attempt in AsyncRetrying(
                    stop=stop_after_attempt(2 if idempotent else 1)
                    | stop_after_delay(max(0.0, deadline - time.monotonic())),
                    wait=wait_jittered(multiplier=self.timeout_s / 20, max=self.timeout_s / 5),
                    retry=retry_if_exception_type(_FAILURES),
                    reraise=True,
                ):
                    with attempt:
                        result = await op()
        except _FAILURES as exc:
            self.breaker.record_failure(exc)
            return False, None
        self.breaker.record_success()
        return True, result


class RedisCache(_Guarded):
    backend = "redis"

    def __init__(
        self, client: Redis, breaker: CircuitBreaker, *, ttl_s: float, timeout_s: float
    ) -> None:
        super().__init__(breaker, timeout_s)
        self.client = client
        self.ttl_ms = max(1, int(ttl_s * 1000))

    async def get(self, key: str) -> bytes | None:
        _, value = await self.call(lambda: self.client.get(CACHE_PREFIX + key), idempotent=True)
        return value if isinstance(value, bytes) else None

    async def set(self, key: str, value: bytes) -> None:
        await self.call(
            lambda: self.client.set(CACHE_PREFIX + key, value, px=self.ttl_ms), idempotent=False
        )

    def describe(self) -> dict[str, Any]:
        return {
            "ttl_ms": self.ttl_ms,
            "timeout_ms": self.timeout_s * 1000,
            "bypassed": not self.breaker.is_closed,
        }


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


class RedisIdempotencyStore(_Guarded):
    backend = "redis"

    def __init__(
        self,
        client: Redis,
        breaker: CircuitBreaker,
        *,
        fallback: IdempotencyStore,
        ttl_s: float,
        timeout_s: float,
    ) -> None:
        super().__init__(breaker, timeout_s)
        self.client = client
        self.fallback = fallback
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.ttl_s = ttl_s
        # Keys stored in the fallback during an outage stay valid for their TTL: until then a
        # Redis miss also looks there, so a replay after recovery still finds its response.
        self._fallback_live_until = 0.0

    async def get(self, key: str) -> StoredResponse | None:
        ok, value = await self.call(
            lambda: self.client.get(IDEMPOTENCY_PREFIX + key), idempotent=True
        )
        if isinstance(value, bytes):
            return decode_stored(value)
        if not ok or time.monotonic() < self._fallback_live_until:
            return await self.fallback.get(key)
        return None

    async def put(self, key: str, response: StoredResponse) -> StoredResponse:
        name = IDEMPOTENCY_PREFIX + key
        encoded = encode_stored(response)

        async def set_or_get() -> bytes | None:
            # SET NX decides the race atomically; the loser reads the winner's response.
            if await self.client.set(name, encoded, nx=True, px=self.ttl_ms):
                return None
            existing = await self.client.get(name)
            return existing if isinstance(existing, bytes) else None

        ok, existing = await self.call(set_or_get, idempotent=False)
        if not ok:
            self._fallback_live_until = time.monotonic() + self.ttl_s
            return await self.fallback.put(key, response)
        return decode_stored(existing) if isinstance(existing, bytes) else response

    def describe(self) -> dict[str, Any]:
        return {
            "ttl_ms": self.ttl_ms,
            "timeout_ms": self.timeout_s * 1000,
            "fallback": self.fallback.backend,
            "using_fallback": not self.breaker.is_closed,
        }
