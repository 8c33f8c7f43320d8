"""Redis cache and idempotency against a private redis-server: use, outage, slowness, recovery."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis

from falcon_platform.config.settings import Settings
from falcon_platform.stores.base import StoredResponse
from falcon_platform.stores.factory import Stores, build_stores
from falcon_platform.testing.servers import RedisServer, running_redis

pytestmark = pytest.mark.integration


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


def redis_settings(home: Path, server: RedisServer, *, probe_interval_s: float) -> Settings:
    return Settings(
        home=home,
        redis_url=server.url,
        redis_timeout_ms=50,
        breaker_failure_threshold=3,
        breaker_reset_timeout_s=0.5,
        shutdown_grace_s=5,
        redis_probe_interval_s=probe_interval_s,
    )


@pytest.fixture
async def stores(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[Stores]:
    # These tests count round trips: no idle probe (it has its own test).
    built = build_stores(redis_settings(tmp_path, redis_server, probe_interval_s=0))
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


# --- batching: one round trip per loop tick ---------------------------------------------------


def command_calls(server: RedisServer) -> Counter[str]:
    """Redis's own count of commands served, by name (INFO commandstats): an independent tally."""
    client = redis.Redis.from_url(server.url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return Counter({name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()})


async def wait_for(condition: Callable[[], bool], what: str, within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_lookups_made_in_one_tick_reach_redis_as_one_mget(
    stores: Stores, redis_server: RedisServer
) -> None:
    pipeline = stores.redis_pipeline
    assert pipeline is not None
    for i in range(64):  # write-behind: none of these waits for Redis
        await stores.cache.set(f"t{i}", f"v{i}".encode())
    await wait_for(lambda: command_calls(redis_server)["set"] >= 64, "the 64 cache fills")
    assert await stores.idempotency.put("idem-0", response("a")) == response("a")
    before, trips = command_calls(redis_server), pipeline.round_trips

    got = await asyncio.gather(
        *(stores.cache.get(f"t{i}") for i in range(64)),
        stores.cache.get("never-set"),
        stores.idempotency.get("idem-0"),
        stores.idempotency.get("idem-missing"),
    )

    spent = command_calls(redis_server) - before
    assert got[:64] == [f"v{i}".encode() for i in range(64)]
    assert got[64:] == [None, response("a"), None]
    assert pipeline.round_trips - trips == 1, "67 lookups in one tick: one round trip"
    assert spent["mget"] == 1
    assert spent["get"] == 0, f"no lookup went on its own: {dict(spent)}"
    metrics = stores.stats()
    assert metrics.redis_round_trips == pipeline.round_trips
    assert metrics.redis_calls is not None
    assert metrics.redis_calls >= 67 + 64


async def test_cache_fills_of_one_tick_go_out_as_one_pipelined_round_trip(
    stores: Stores, redis_server: RedisServer
) -> None:
    pipeline = stores.redis_pipeline
    assert pipeline is not None
    before, trips = command_calls(redis_server), pipeline.round_trips
    for i in range(32):
        await stores.cache.set(f"fill{i}", b"x")
    assert pipeline.round_trips == trips, "a cache fill never waits for Redis"
    await wait_for(lambda: pipeline.round_trips == trips + 1, "the fills' round trip")
    await wait_for(lambda: (command_calls(redis_server) - before)["set"] == 32, "32 SETs")
    assert (command_calls(redis_server) - before)["eval"] == 1, "32 fills, one command"
    assert await stores.cache.get_many([f"fill{i}" for i in range(32)]) == [b"x"] * 32
    assert pipeline.round_trips == trips + 2
    client = redis.Redis.from_url(redis_server.url)
    try:
        ttls = [client.pttl(f"falcon:cache:fill{i}") for i in (0, 31)]
    finally:
        client.close()
    assert all(0 < ttl <= 600_000 for ttl in ttls), f"every fill expires with the cache TTL: {ttls}"


async def test_a_batch_request_reads_all_its_texts_in_one_round_trip(
    stores: Stores, redis_server: RedisServer
) -> None:
    before = command_calls(redis_server)
    assert await stores.cache.get_many([f"m{i}" for i in range(50)]) == [None] * 50
    spent = command_calls(redis_server) - before
    assert (spent["mget"], spent["get"]) == (1, 0)


async def test_a_local_first_level_answers_repeats_without_a_round_trip(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    settings = Settings(home=tmp_path, redis_url=redis_server.url, redis_local_cache_entries=100)
    built = build_stores(settings)
    await built.start()
    try:
        pipeline = built.redis_pipeline
        assert pipeline is not None
        await built.cache.set("hot", b"1")
        await wait_for(lambda: command_calls(redis_server)["set"] >= 1, "the fill")
        trips = pipeline.round_trips
        for _ in range(20):
            assert await built.cache.get("hot") == b"1"
        assert pipeline.round_trips == trips, "repeats are answered in-process"
        assert await built.cache.get("cold") is None  # a local miss still asks Redis
        assert pipeline.round_trips == trips + 1
        assert built.status()["cache"]["details"]["local"]["entries"] == 1
    finally:
        await built.close()


async def test_after_a_redis_restart_the_first_probe_closes_the_breaker(
    stores: Stores, redis_server: RedisServer
) -> None:
    """The worker's idle connections died with Redis: the probe must not be spent on one."""
    pipeline = stores.redis_pipeline
    assert pipeline is not None
    assert await pipeline.warm() >= 1
    redis_server.kill()
    for _ in range(10):
        await stores.cache.get("during")
    assert stores.degraded() == frozenset({"redis"})
    redis_server.start()
    # The breaker lets one probe through once its reset timeout (0.5 s) has passed.
    await asyncio.sleep(0.6)
    assert await stores.cache.get("probe") is None
    assert stores.degraded() == frozenset(), "one probe after the restart closes the breaker"


async def test_an_idle_worker_learns_that_redis_died_and_came_back_without_a_request(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """`falcon status` used to say "redis ok" until a user's request tripped the breaker."""
    stores = build_stores(redis_settings(tmp_path, redis_server, probe_interval_s=0.1))
    await stores.start()
    try:
        pipeline = stores.redis_pipeline
        assert pipeline is not None
        await wait_for(lambda: pipeline.probes >= 1, "the first idle probe")
        assert stores.status()["cache"]["state"] == "ok"
        redis_server.kill()
        await wait_for(lambda: stores.status()["cache"]["state"] == "degraded", "degraded")
        assert stores.status()["idempotency"]["state"] == "degraded"
        redis_server.start()
        await wait_for(lambda: stores.status()["cache"]["state"] == "ok", "ok again")
        assert stores.degraded() == frozenset()
        # Every call was a probe (some were refused by the open breaker): no request was needed.
        assert 0 < pipeline.calls <= pipeline.probes

        # Busy: requests keep the breaker current, so no probe goes out beside them.
        probes = pipeline.probes
        for _ in range(20):
            await stores.cache.get("busy")
            await asyncio.sleep(0.02)
        assert pipeline.probes - probes <= 1
    finally:
        await stores.close()
