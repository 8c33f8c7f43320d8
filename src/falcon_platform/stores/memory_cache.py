"""The embedded response cache: in-process, LRU, with a TTL, bounded by entries **and** bytes.

    cache = MemoryCache(max_entries=50_000, max_bytes=64 << 20, ttl_s=600)
    await cache.set("k", b"...")
    await cache.get("k")        # b"..." until evicted or expired

An ``OrderedDict`` in least-recently-used order, each value stored with its expiry time.
Written by hand rather than with ``cachetools.TTLCache``: that cost 5.5 us per miss-and-set
(timer context, linked-list expiry on every write) against 0.6 us here, on the hot path of
every request with a new text (measured with 100k unique keys at the default 50k bound).
Expired entries are dropped when read, and otherwise leave by the LRU bounds like any other.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

# What one entry costs beyond its key and value bytes (dict slot, links, timestamps), so a
# flood of tiny entries is still bounded in real memory; measured roughly, kept round.
ENTRY_OVERHEAD_BYTES = 200


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
        self._data: OrderedDict[str, tuple[float, bytes]] = OrderedDict()  # key -> (expiry, value)
        self._bytes = 0

    @staticmethod
    def _size(value: bytes) -> int:
        return len(value) + ENTRY_OVERHEAD_BYTES

    async def get(self, key: str) -> bytes | None:
        return self.lookup(key)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self.lookup(key) for key in keys]

    async def set(self, key: str, value: bytes) -> None:
        self.store(key, value)

    def lookup(self, key: str) -> bytes | None:
        """The value, or None if absent or expired (synchronous: also Redis's first level)."""
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry[0] <= self._timer():
            self._drop(key)
            return None
        self._data.move_to_end(key)
        return entry[1]

    def store(self, key: str, value: bytes) -> None:
        size = self._size(value)
        if not self.enabled or size > self.max_bytes:
            return  # larger than the whole budget: not cacheable, not an error
        if key in self._data:
            self._drop(key)
        self._data[key] = (self._timer() + self.ttl_s, value)
        self._bytes += size
        while len(self._data) > self.max_entries or self._bytes > self.max_bytes:
            _, (_, old) = self._data.popitem(last=False)  # least recently used first
            self._bytes -= self._size(old)

    def _drop(self, key: str) -> None:
        _, value = self._data.pop(key)
        self._bytes -= self._size(value)

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
