"""The embedded response cache is bounded by entries and by bytes, and expires by TTL."""

from __future__ import annotations

import gc
import hashlib
import struct
import tracemalloc

import pytest

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


def test_an_entry_is_stored_under_a_16_byte_digest_with_its_expiry_in_the_value() -> None:
    """The entry's layout is what keeps 50,000 answers near 10 MiB (not ~20 with a str key
    and an (expiry, value) tuple): two small bytes objects per entry."""
    cache = MemoryCache(max_entries=10, max_bytes=1 << 20, ttl_s=60, timer=lambda: 100.0)
    cache.store("sentiment-1:" + "ab" * 32, b"\x01" * 24)
    ((key, entry),) = cache._data.items()
    assert key == hashlib.blake2b(("sentiment-1:" + "ab" * 32).encode(), digest_size=16).digest()
    assert entry == struct.pack("<d", 160.0) + b"\x01" * 24


def test_keys_that_differ_only_in_the_model_version_are_different_entries() -> None:
    cache = MemoryCache(max_entries=10, max_bytes=1 << 20, ttl_s=60)
    digest = "0f" * 32
    cache.store(f"sentiment-1:{digest}", b"one")
    cache.store(f"sentiment-2:{digest}", b"two")
    assert cache.lookup(f"sentiment-1:{digest}") == b"one"
    assert cache.lookup(f"sentiment-2:{digest}") == b"two"
    assert cache.lookup(f"sentiment-3:{digest}") is None


@pytest.mark.parametrize("entries", [1_000, 21_845, 21_846, 50_000])
def test_the_byte_count_never_under_states_what_the_entries_really_take(entries: int) -> None:
    """The byte bound is the cache's real memory: what tracemalloc sees the entries take
    (keys, values, the dict's table, just before and just after it doubles) is never more
    than ``current_bytes`` says, nor less than 70 % of it."""
    cache = MemoryCache(max_entries=entries, max_bytes=1 << 40, ttl_s=60)
    keys = [f"sentiment-6995960c-2e26ff:{i:064x}" for i in range(entries)]
    values = [struct.pack("<3d", i, 0.5, 0.25) for i in range(entries)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for key, value in zip(keys, values, strict=True):
            cache.store(key, value)
        gc.collect()
        taken = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert 0.7 * cache.current_bytes <= taken <= cache.current_bytes, (taken, cache.current_bytes)
    assert cache.current_bytes == entries * (24 + ENTRY_OVERHEAD_BYTES)
