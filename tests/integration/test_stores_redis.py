"""Redis cache and idempotency against a private redis-server: use, outage, slowness, recovery."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from falcon_platform.config.settings import Settings
from falcon_platform.stores.base import StoredResponse
from falcon_platform.stores.factory import Stores, build_stores
from falcon_platform.testing.servers import RedisServer, running_redis

pytestmark = pytest.mark.integration


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


@pytest.fixture
async def stores(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[Stores]:
    settings = Settings(
        home=tmp_path,
        redis_url=redis_server.url,
        redis_timeout_ms=50,
        breaker_failure_threshold=3,
        breaker_reset_timeout_s=0.5,
        shutdown_grace_s=5,
    )
    built = build_stores(settings)
    await built.start()
    yield built
    await built.close()


def response(tag: str) -> StoredResponse:
    return StoredResponse(
        body_hash=f"h-{tag}",
        status_code=200,
        body=b'{"x": "' + tag.encode() + b'"}',
        created_at=1.0,
    )


async def test_redis_backs_cache_and_idempotency_and_status_says_so(stores: Stores) -> None:
    await stores.cache.set("k", b"value")
    assert await stores.cache.get("k") == b"value"
    assert await stores.cache.get("missing") is None
    assert await stores.idempotency.put("key-1", response("a")) == response("a")
    assert await stores.idempotency.get("key-1") == response("a")
    status = stores.status()
    assert status["cache"]["backend"] == "redis"
    assert status["idempotency"]["backend"] == "redis"
    assert status["cache"]["state"] == "ok"
    assert stores.degraded() == frozenset()


async def test_racing_puts_on_one_key_all_return_the_first_stored_response(stores: Stores) -> None:
    results = await asyncio.gather(
        *(stores.idempotency.put("race", response(str(i))) for i in range(20))
    )
    assert len(set(results)) == 1
    assert await stores.idempotency.get("race") == results[0]


async def test_redis_killed_calls_never_raise_fall_back_and_recover_after_restart(
    stores: Stores, redis_server: RedisServer
) -> None:
    await stores.cache.set("warm", b"1")
    redis_server.kill()
    started = time.monotonic()
    for i in range(10):
        assert await stores.cache.get("warm") is None  # bypassed, no error
        await stores.cache.set(f"k{i}", b"v")
    stored = await stores.idempotency.put("during-outage", response("fallback"))
    assert stored == response("fallback")
    assert await stores.idempotency.get("during-outage") == response("fallback"), "kept in SQLite"
    assert time.monotonic() - started < 3.0, "an outage must cost at most a timeout per call"
    assert stores.degraded() == frozenset({"redis"})
    assert stores.status()["cache"]["state"] == "degraded"
    assert stores.stats().breaker_states["redis"] == 1

    redis_server.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and stores.degraded():
        await stores.cache.get("probe")
        await asyncio.sleep(0.1)
    assert stores.degraded() == frozenset()
    assert await stores.idempotency.get("during-outage") == response("fallback"), (
        "a key stored on this machine during the outage is still honoured after recovery"
    )
    await stores.cache.set("after", b"2")
    assert await stores.cache.get("after") == b"2"
    transitions = stores.stats().breaker_transitions
    assert transitions[("redis", "open")] >= 1
    assert transitions[("redis", "half_open")] >= 1
    assert transitions[("redis", "closed")] >= 1


async def test_hung_redis_costs_at_most_the_timeout_per_call(
    stores: Stores, redis_server: RedisServer
) -> None:
    redis_server.pause()
    try:
        started = time.monotonic()
        assert await stores.cache.get("k") is None
        first = time.monotonic() - started
        assert first < 0.5, f"one call against a hung Redis took {first:.3f}s (timeout 50 ms)"
        for _ in range(5):
            await stores.cache.get("k")
        assert stores.degraded() == frozenset({"redis"})
    finally:
        redis_server.resume()
