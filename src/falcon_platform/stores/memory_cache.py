"""The embedded response cache: in-process, LRU, with a TTL, bounded by entries **and** bytes.

    cache = MemoryCache(max_entries=50_000, max_bytes=16 << 20, ttl_s=600)
    await cache.set("k", b"...")
    await cache.get("k")        # b"..." until evicted or expired

An ``OrderedDict`` in least-recently-used order. An entry is two small ``bytes``: the key's
16-byte BLAKE2b digest, and the value behind its expiry time (8 bytes), so a cached answer
costs ~270 bytes of process memory, not the ~400 of a ``str`` key (model version and hex
digest, 139 bytes as an object) with an ``(expiry, value)`` tuple and a float (measured with
50,000 entries: 12.8 against 19.7 MiB; docs/CAPACITY_PLAN.md, issue 17 phase 4). 128 bits
of a cryptographic digest: a collision needs ~2**64 work, and only makes two texts the
colliding client chose share an answer; reaching someone else's text needs a preimage.

Written by hand rather than with ``cachetools.TTLCache``: that cost 5.5 us per miss-and-set
(timer context, linked-list expiry on every write) against 0.6 us here when it was measured;
the digest (one in the lookup, one in the store) took it from 1.1 to 2.1 us on a later, busier
machine (100k unique keys through a 50k bound, ``time.thread_time``). Expired entries are dropped when read, and otherwise leave by the LRU bounds like any
other.
"""

from __future__ import annotations

import struct
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from hashlib import blake2b
from typing import Any

# What one entry costs beyond its value's bytes (the digest key object, the value object with
# its expiry, the OrderedDict's slot, index and link), so the byte bound is the entry's real
# memory: measured with tracemalloc at 50,000 entries of 24-byte values, then rounded up
# (tests/unit/test_stores_memory_cache.py checks the count never under-states it).
ENTRY_OVERHEAD_BYTES = 208
DIGEST_BYTES = 16
_EXPIRY = struct.Struct("<d")  # monotonic seconds, in front of the value
_EXPIRY_BYTES = _EXPIRY.size
_expiry_of = _EXPIRY.unpack_from
_pack_expiry = _EXPIRY.pack


def entry_key(key: str) -> bytes:
    """The 16-byte digest an entry is stored under (any ``str`` key; pure)."""
    return blake2b(key.encode(), digest_size=DIGEST_BYTES).digest()


def entry_cost(value: bytes) -> int:
    """What one cached ``value`` costs in memory, in bytes (pure)."""
    return len(value) + ENTRY_OVERHEAD_BYTES


class MemoryCache:
    backend = "memory"
    dependency: str | None = None

    def __init__(
        self,
        *,
        max_entries: int,
        max_bytes: int,
        ttl_s: float,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self.enabled = max_entries > 0 and max_bytes > 0 and ttl_s > 0
        self._timer = timer
        self._data: OrderedDict[bytes, bytes] = OrderedDict()  # digest -> expiry + value
        self._bytes = 0

    async def get(self, key: str) -> bytes | None:
        return self.lookup(key)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self.lookup(key) for key in keys]

    async def set(self, key: str, value: bytes) -> None:
        self.store(key, value)

    def lookup(self, key: str) -> bytes | None:
        """The value, or None if absent or expired (synchronous: also Redis's first level)."""
        if not self._data:
            return None
        digest = entry_key(key)
        entry = self._data.get(digest)
        if entry is None:
            return None
        if _expiry_of(entry)[0] <= self._timer():
            self._drop(digest)
            return None
        self._data.move_to_end(digest)
        return entry[_EXPIRY_BYTES:]

    def store(self, key: str, value: bytes) -> None:
        size = entry_cost(value)
        if not self.enabled or size > self.max_bytes:
            return  # larger than the whole budget: not cacheable, not an error
        digest = entry_key(key)
        if digest in self._data:
            self._drop(digest)
        self._data[digest] = _pack_expiry(self._timer() + self.ttl_s) + value
        self._bytes += size
        while len(self._data) > self.max_entries or self._bytes > self.max_bytes:
            _, old = self._data.popitem(last=False)  # least recently used first
            self._bytes -= len(old) - _EXPIRY_BYTES + ENTRY_OVERHEAD_BYTES

    def _drop(self, digest: bytes) -> None:
        entry = self._data.pop(digest)
        self._bytes -= len(entry) - _EXPIRY_BYTES + ENTRY_OVERHEAD_BYTES

    def __len__(self) -> int:
        return len(self._data)

    @property
    def current_bytes(self) -> int:
        return self._bytes

    def describe(self) -> dict[str, Any]:
        return {
            "entries": len(self._data),
            "max_entries": self.max_entries,
            "bytes": self.current_bytes,
            "max_bytes": self.max_bytes,
        }
