"""Time as an interface, so decisions can be tested with a fake (``testing.FakeClock``)."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock time, seconds since the epoch (UTC)."""
        ...

    def monotonic(self) -> float:
        """Monotonic seconds, for intervals and deadlines."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()
