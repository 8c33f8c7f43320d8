"""The embedded response cache is bounded by entries and by bytes, and expires by TTL."""

from __future__ import annotations

from falcon_platform.stores.memory_cache import ENTRY_OVERHEAD_BYTES, MemoryCache


async def test_entry_bound_evicts_least_recently_used() -> None:
    cache = MemoryCache(max_entries=2, max_bytes=1 << 20, ttl_s=60)
    await cache.set("a", b"1")
    await cache.set("b", b"2")
    assert await cache.get("a") == b"1"  # a is now more recent than b
    await cache.set("c", b"3")
    assert len(cache) == 2
    assert await cache.get("b") is None
    assert await cache.get("a") == b"1"


async def test_byte_bound_holds_even_when_entries_would_fit() -> None:
    budget = 3 * (1000 + ENTRY_OVERHEAD_BYTES)
    cache = MemoryCache(max_entries=1000, max_bytes=budget, ttl_s=60)
    for i in range(10):
        await cache.set(f"k{i}", b"x" * 1000)
    assert cache.current_bytes <= budget
    assert len(cache) == 3
    assert await cache.get("k9") == b"x" * 1000


async def test_value_larger_than_the_whole_budget_is_not_cached_and_does_not_raise() -> None:
    cache = MemoryCache(max_entries=10, max_bytes=500, ttl_s=60)
    await cache.set("big", b"x" * 1000)
    assert await cache.get("big") is None


async def test_entries_expire_after_the_ttl() -> None:
    now = [0.0]
    cache = MemoryCache(max_entries=10, max_bytes=1 << 20, ttl_s=5, timer=lambda: now[0])
    await cache.set("k", b"v")
    now[0] = 4.9
    assert await cache.get("k") == b"v"
    now[0] = 5.1
    assert await cache.get("k") is None


async def test_zero_entries_disables_the_cache() -> None:
    cache = MemoryCache(max_entries=0, max_bytes=1 << 20, ttl_s=5)
    await cache.set("k", b"v")
    assert await cache.get("k") is None


async def test_overwriting_a_key_keeps_the_byte_count_exact_and_renews_the_ttl() -> None:
    now = [0.0]
    cache = MemoryCache(max_entries=10, max_bytes=1 << 20, ttl_s=5, timer=lambda: now[0])
    await cache.set("k", b"v" * 100)
    first = cache.current_bytes
    now[0] = 4.0
    await cache.set("k", b"v" * 100)
    assert cache.current_bytes == first
    now[0] = 8.0  # 8 s after the first write, 4 s after the second
    assert await cache.get("k") == b"v" * 100
    now[0] = 9.5
    assert await cache.get("k") is None
    assert cache.current_bytes == 0
    assert len(cache) == 0
