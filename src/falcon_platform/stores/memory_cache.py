"""The embedded response cache: in-process, LRU, with a TTL, bounded by entries **and** bytes.

    cache = MemoryCache(max_entries=50_000, max_bytes=64 << 20, ttl_s=600)
    await cache.set("k", b"...")
    await cache.get("k")        # b"..." until evicted or expired

``cachetools.TTLCache`` bounds the bytes (``getsizeof``); the thin wrapper adds the
entry bound, which cachetools cannot apply at the same time as a size function.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from cachetools import TTLCache

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
        self.enabled = max_entries > 0 and max_bytes > 0 and ttl_s > 0
        self._data: TTLCache[str, bytes] = TTLCache(
            maxsize=max(max_bytes, 1), ttl=max(ttl_s, 1e-9), timer=timer, getsizeof=self._size
        )

    @staticmethod
    def _size(value: bytes) -> int:
        return len(value) + ENTRY_OVERHEAD_BYTES

    async def get(self, key: str) -> bytes | None:
        return self._data.get(key) if self.enabled else None

    async def set(self, key: str, value: bytes) -> None:
        if not self.enabled or self._size(value) > self.max_bytes:
            return  # larger than the whole budget: not cacheable, not an error
        self._data[key] = value
        while len(self._data) > self.max_entries:
            self._data.popitem()  # least recently used first

    def __len__(self) -> int:
        return len(self._data)

    @property
    def current_bytes(self) -> int:
        return int(self._data.currsize)

    def describe(self) -> dict[str, Any]:
        return {
            "entries": len(self._data),
            "max_entries": self.max_entries,
            "bytes": self.current_bytes,
            "max_bytes": self.max_bytes,
        }
