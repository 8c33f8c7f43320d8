"""The memory watchdog charges a worker its PSS, not its RSS (issue 10).

Workers forked from a zygote share the model's pages with it and with each other; RSS counts
those pages in full for every worker, so an RSS limit fired early and reported memory was
inflated. The watchdog now reads RSS every pass (cheap) and PSS (a page-table walk) when RSS
reaches a limit, and every ``OWNED_REPORT_INTERVAL_S`` for status. The readers are injected
here so each decision is checked against chosen numbers; ``/proc`` parsing is checked on
the kernel's own text.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from falcon_platform.config import memory
from falcon_platform.events.journal import EventKind
from falcon_platform.supervisor.enforcers import (
    OwnedMemory,
    WatchdogEnforcer,
    owned_memory,
    parse_smaps_rollup,
    rss_bytes,
)
from falcon_platform.supervisor.fleet_metrics import SupervisorMetrics
from falcon_platform.supervisor.lifecycle import WorkerState
from falcon_platform.supervisor.slots import Slot
from falcon_platform.supervisor.status import update_gauges, worker_status
from falcon_platform.supervisor.watchdog import OWNED_REPORT_INTERVAL_S, MemoryWatchdog
from falcon_platform.testing.clock import FakeClock
from falcon_platform.testing.journal import FakeEventJournal

MB = 2**20
LIMITS = memory.MemoryLimits(limit_bytes=500 * MB, soft_bytes=400 * MB)


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    """A real process to stand for the worker (the watchdog signals it on a kill)."""
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


class Readers:
    """RSS and PSS the test chooses; counts the (expensive) PSS reads."""

    def __init__(self, rss_mb: int, pss_mb: int | None) -> None:
        self.rss_mb, self.pss_mb = rss_mb, pss_mb
        self.owned_reads = 0

    def rss(self, pid: int) -> int | None:
        del pid
        return self.rss_mb * MB

    def owned(self, pid: int) -> OwnedMemory | None:
        del pid
        self.owned_reads += 1
        if self.pss_mb is None:
            return None
        return OwnedMemory(pss_bytes=self.pss_mb * MB, uss_bytes=(self.pss_mb - 20) * MB)


def make(
    readers: Readers, proc: subprocess.Popen[bytes]
) -> tuple[MemoryWatchdog, Slot, FakeEventJournal, FakeClock, list[str]]:
    clock, journal = FakeClock(), FakeEventJournal()
    watchdog = MemoryWatchdog(
        LIMITS,
        WatchdogEnforcer(),
        clock=clock,
        metrics=SupervisorMetrics(),
        journal=journal,  # type: ignore[arg-type]
        read_rss=readers.rss,
        read_owned=readers.owned,
    )
    slot = Slot("w1", "r1", 1, Path("/nonexistent/w1.sock"), state=WorkerState.READY)
    slot.proc = proc
    slot.extra["forked"] = True
    recycled: list[str] = []
    return watchdog, slot, journal, clock, recycled


def test_a_forked_worker_over_the_limit_by_rss_but_not_by_pss_is_left_alone(
    child: subprocess.Popen[bytes],
) -> None:
    """RSS 600 MB (the shared model pages counted in full) against a 500 MB limit, PSS 300 MB:
    no kill, no recycle (under RSS this worker was SIGKILLed); status shows both numbers."""
    readers = Readers(rss_mb=600, pss_mb=300)
    watchdog, slot, journal, clock, recycled = make(readers, child)
    assert not watchdog.check([slot], recycle=lambda s: recycled.append(s.slot_id))
    assert child.poll() is None
    assert not slot.watchdog_killed
    assert recycled == []
    assert journal.events == []
    view = worker_status(slot, LIMITS, {}, clock.now(), clock.monotonic())
    assert (view["rss_bytes"], view["pss_bytes"], view["uss_bytes"]) == (
        600 * MB,
        300 * MB,
        280 * MB,
    )
    metrics = SupervisorMetrics()
    update_gauges(metrics, [slot], {"r1": 1}, {})
    labels = {"worker": "w1", "release": "r1"}
    assert (
        metrics.registry.get_sample_value("falcon_worker_proportional_memory_bytes", labels)
        == 300 * MB
    )
    assert (
        metrics.registry.get_sample_value("falcon_worker_resident_memory_bytes", labels) == 600 * MB
    )


def test_pss_at_the_soft_limit_recycles_and_the_journal_names_both_numbers(
    child: subprocess.Popen[bytes],
) -> None:
    readers = Readers(rss_mb=480, pss_mb=410)
    watchdog, slot, journal, _, recycled = make(readers, child)
    assert watchdog.check([slot], recycle=lambda s: recycled.append(s.slot_id))
    assert recycled == ["w1"]
    [event] = journal.events
    assert event.kind == EventKind.LIMIT_RECYCLE
    assert event.details["rss_bytes"] == 480 * MB
    assert event.details["pss_bytes"] == 410 * MB
    assert event.details["soft_limit_bytes"] == 400 * MB
    assert child.poll() is None  # recycled gracefully by the caller, not killed


def test_pss_at_the_hard_limit_kills_at_once(child: subprocess.Popen[bytes]) -> None:
    readers = Readers(rss_mb=700, pss_mb=520)
    watchdog, slot, _, _, recycled = make(readers, child)
    assert watchdog.check([slot], recycle=lambda s: recycled.append(s.slot_id))
    assert child.wait(10) == -signal.SIGKILL
    assert slot.watchdog_killed
    assert slot.extra["watchdog_kill_pss"] == 520 * MB
    assert slot.extra["watchdog_kill_rss"] == 700 * MB


def test_when_pss_cannot_be_read_rss_is_charged(child: subprocess.Popen[bytes]) -> None:
    """No smaps_rollup (an old kernel, a race with the exit): the stricter number holds."""
    readers = Readers(rss_mb=510, pss_mb=None)
    watchdog, slot, _, _, _ = make(readers, child)
    watchdog.check([slot], recycle=lambda s: None)
    assert child.wait(10) == -signal.SIGKILL


def test_pss_is_read_only_near_a_limit_or_once_per_report_interval(
    child: subprocess.Popen[bytes],
) -> None:
    """Below every limit by RSS the page-table walk runs once per report interval, not once
    per 0.2 s pass; at a limit it runs on every pass."""
    readers = Readers(rss_mb=200, pss_mb=120)
    watchdog, slot, _, clock, _ = make(readers, child)
    passes = int(OWNED_REPORT_INTERVAL_S / 0.2) * 3
    for _ in range(passes):
        watchdog.check([slot], recycle=lambda s: None)
        clock.advance(0.2)
    assert 3 <= readers.owned_reads <= 4
    assert slot.pss_bytes == 120 * MB
    readers.rss_mb, reads = 450, readers.owned_reads
    for _ in range(5):
        watchdog.check([slot], recycle=lambda s: None)
        clock.advance(0.2)
    assert readers.owned_reads == reads + 5


def test_needs_owned_sample_uses_the_lowest_limit_in_force() -> None:
    assert not memory.needs_owned_sample(399 * MB, LIMITS)
    assert memory.needs_owned_sample(400 * MB, LIMITS)
    hard_only = memory.MemoryLimits(limit_bytes=500 * MB, soft_bytes=None)
    assert not memory.needs_owned_sample(499 * MB, hard_only)
    assert memory.needs_owned_sample(500 * MB, hard_only)
    assert not memory.needs_owned_sample(10**12, memory.MemoryLimits(None, None))


ROLLUP = """55a725aeb000-7ffffad4a000 ---p 00000000 00:00 0                          [rollup]
Rss:              101612 kB
Pss:               41181 kB
Pss_Dirty:         30112 kB
Shared_Clean:      60460 kB
Shared_Dirty:          0 kB
Private_Clean:      1040 kB
Private_Dirty:     30112 kB
Swap:                  0 kB
"""


def test_parse_smaps_rollup_reads_pss_and_private_pages() -> None:
    owned = parse_smaps_rollup(ROLLUP)
    assert owned == OwnedMemory(pss_bytes=41181 * 1024, uss_bytes=(1040 + 30112) * 1024)
    assert parse_smaps_rollup("Rss: 12 kB\n") is None  # no Pss line: unknown, not zero
    assert parse_smaps_rollup("") is None


def test_owned_memory_of_a_real_process_is_at_most_its_rss() -> None:
    owned = owned_memory(os.getpid())
    rss = rss_bytes(os.getpid())
    assert owned is not None
    assert rss is not None
    assert 0 < owned.uss_bytes <= owned.pss_bytes <= rss
    assert owned_memory(2**22 + 12345) is None  # no such pid
