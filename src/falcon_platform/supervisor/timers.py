"""Periodic work on the supervisor's event loop: probes, the memory watchdog, scrapes, plugins.

PeriodicTask("alerts", 15.0, evaluate)                 # what a plugin hands the supervisor
asyncio.create_task(run_every(task.interval_s, task.run))
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger("falcon.supervisor")


@dataclass(frozen=True)
class PeriodicTask:
    """Extra work on the supervisor's loop, e.g. the alert evaluator (``interval_s`` apart)."""

    name: str
    interval_s: float
    run: Callable[[], Awaitable[None]]


async def run_every(interval: float, work: Callable[[], Awaitable[None]]) -> None:
    """Await ``work`` every ``interval`` seconds (start to start) until cancelled."""
    while True:
        started = time.monotonic()
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception:  # a failing observer must not take the supervisor down
            log.exception("periodic task failed")
        await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))
