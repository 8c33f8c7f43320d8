"""After a worker exits (``supervisor.exits``): what the supervisor knows about the slot turned
into an exit record, the journal entry, whether the slot leaves the pool, and what
``ExitHandler.handle`` then does to the slot, the counters and the journal.

``restarts.classify_exit``/``decide_after_exit`` have their own table in
``test_supervisor_restarts.py``; this file checks what the shell feeds them and performs.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from falcon_platform.config.memory import MemoryLimits
from falcon_platform.config.settings import Settings
from falcon_platform.config.spec import RestartSpec
from falcon_platform.supervisor.enforcers import WatchdogEnforcer
from falcon_platform.supervisor.exits import (
    CrashLoopTracker,
    ExitHandler,
    classify_slot_exit,
    exit_details,
    leaves_pool,
    may_leave_orphans,
)
from falcon_platform.supervisor.fleet_metrics import SupervisorMetrics
from falcon_platform.supervisor.lifecycle import WorkerState
from falcon_platform.supervisor.observers import WorkerObservers
from falcon_platform.supervisor.restarts import ExitReason
from falcon_platform.supervisor.slots import Slot
from falcon_platform.testing.clock import FakeClock
from falcon_platform.testing.journal import FakeEventJournal
from falcon_platform.worker.zygote import ReparentedProcess

S = WorkerState
MB = 1_048_576


def slot(
    state: WorkerState = S.READY,
    *,
    ready: bool = True,
    retiring: bool = False,
    surge: bool = False,
    recycling: bool = False,
    liveness_killed: bool = False,
    watchdog_killed: bool = False,
    peak_rss: int = 0,
) -> Slot:
    s = Slot("w1", "r1", 1, Path("/nonexistent/w1.sock"), state=state)
    s.proc = ReparentedProcess(4321)
    s.started_mono = 900.0
    s.ready_mono = 910.0 if ready else None
    s.retiring, s.surge, s.recycling = retiring, surge, recycling
    s.liveness_killed, s.watchdog_killed = liveness_killed, watchdog_killed
    s.peak_rss_bytes = peak_rss
    return s


# --- the exit record --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "returncode", "stopping", "cgroup_oom", "reason", "code", "expected"),
    [
        ({}, 1, False, False, ExitReason.ERROR, 1, False),
        ({}, -9, False, False, ExitReason.SIGNALED, 137, False),
        ({}, 0, False, False, ExitReason.COMPLETED, 0, False),
        ({"ready": False}, 78, False, False, ExitReason.BOOT_FAILED, 78, False),
        # killed by the kernel's cgroup OOM killer, or by the supervisor's watchdog
        ({}, -9, False, True, ExitReason.OOM_KILLED, 137, False),
        ({"watchdog_killed": True}, -9, False, False, ExitReason.OOM_KILLED, 137, False),
        # asked to go: retiring, or the whole supervisor stopping
        ({"retiring": True}, 0, False, False, ExitReason.STOPPED, 0, True),
        ({}, 0, True, False, ExitReason.STOPPED, 0, True),
        # an OOM while draining is still an OOM, and not "expected"
        ({"retiring": True}, -9, False, True, ExitReason.OOM_KILLED, 137, False),
        ({"liveness_killed": True}, -15, False, False, ExitReason.LIVENESS_KILLED, 143, False),
        ({"recycling": True}, 0, False, False, ExitReason.RECYCLED, 0, False),
    ],
)
def test_the_exit_record_of_a_slot(
    kwargs: dict[str, bool],
    returncode: int,
    stopping: bool,
    cgroup_oom: bool,
    reason: ExitReason,
    code: int,
    expected: bool,
) -> None:
    info = classify_slot_exit(
        slot(**kwargs),  # type: ignore[arg-type]
        returncode,
        stopping=stopping,
        cgroup_oom=cgroup_oom,
        enforcer_peak_bytes=None,
    )
    assert (info.reason, info.exit_code, info.expected) == (reason, code, expected)
    assert info.during_boot is not kwargs.get("ready", True)


@pytest.mark.parametrize(
    ("sampled", "cgroup_peak", "expected"),
    [
        (300 * MB, None, 300 * MB),
        (300 * MB, 350 * MB, 350 * MB),  # the kernel saw a peak between two samples
        (300 * MB, 200 * MB, 300 * MB),
        (0, 250 * MB, 250 * MB),
        (0, None, None),  # nothing known: unknown, not 0
        (0, 0, None),
    ],
)
def test_the_peak_is_the_larger_known_one(
    sampled: int, cgroup_peak: int | None, expected: int | None
) -> None:
    info = classify_slot_exit(
        slot(peak_rss=sampled), -9, stopping=False, cgroup_oom=True, enforcer_peak_bytes=cgroup_peak
    )
    assert info.peak_rss_bytes == expected


@pytest.mark.parametrize(
    ("kwargs", "stopping", "expected"),
    [
        ({}, False, False),
        ({"retiring": True}, False, True),
        ({}, True, True),
        ({"surge": True, "ready": False}, False, True),  # a surge worker that never served
        ({"surge": True}, False, False),  # a surge worker that served is restarted
        ({"ready": False}, False, False),  # a pool worker failing to boot is retried
    ],
)
def test_which_slots_leave_the_pool(
    kwargs: dict[str, bool], stopping: bool, expected: bool
) -> None:
    assert leaves_pool(slot(**kwargs), stopping=stopping) is expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ready", "returncode", "expected"),
    [(True, 0, False), (True, 1, True), (True, -9, True), (False, 0, True), (False, 78, True)],
)
def test_which_exits_may_leave_unshipped_request_log_segments(
    ready: bool, returncode: int, expected: bool
) -> None:
    assert may_leave_orphans(slot(ready=ready), returncode) is expected


def test_the_journal_entry_of_a_watchdog_oom_kill() -> None:
    s = slot(watchdog_killed=True, peak_rss=600 * MB)
    s.peak_pss_bytes = 450 * MB
    s.extra.update(watchdog_kill_wall=123.5, watchdog_kill_rss=610 * MB, watchdog_kill_pss=455 * MB)
    info = classify_slot_exit(s, -9, stopping=False, cgroup_oom=False, enforcer_peak_bytes=None)
    details = exit_details(
        s, info, cgroup_oom=False, enforcer_kind="cgroup-v2", limit_bytes=512 * MB, now_mono=970.25
    )
    assert details == {
        "pid": 4321,
        "exit_code": 137,
        "signal": "SIGKILL",
        "reason": "OOMKilled",
        "oom_killed": True,
        "oom_enforcement": "watchdog",  # the watchdog did it, whatever enforcer is installed
        "peak_rss_bytes": 600 * MB,
        "peak_pss_bytes": 450 * MB,
        "memory_limit_bytes": 512 * MB,
        "during_boot": False,
        "uptime_s": 70.25,
        "healthy_for_s": 60.25,
        "watchdog_killed_at": 123.5,
        "watchdog_rss_bytes": 610 * MB,
        "watchdog_pss_bytes": 455 * MB,
    }


def test_the_journal_entry_of_a_boot_failure() -> None:
    s = slot(S.STARTING, ready=False)
    s.boot_message = "ModelLoadError: no such file"
    s.proc = None
    info = classify_slot_exit(s, 78, stopping=False, cgroup_oom=False, enforcer_peak_bytes=None)
    details = exit_details(
        s, info, cgroup_oom=False, enforcer_kind="watchdog", limit_bytes=None, now_mono=903.0
    )
    assert details["pid"] is None
    assert details["oom_enforcement"] is None
    assert details["peak_rss_bytes"] is None
    assert details["peak_pss_bytes"] is None
    assert (details["during_boot"], details["uptime_s"], details["healthy_for_s"]) == (
        True,
        3.0,
        0.0,
    )
    assert details["boot_message"] == "ModelLoadError: no such file"
    assert "watchdog_killed_at" not in details


def test_a_kernel_oom_names_the_enforcer() -> None:
    s = slot()
    info = classify_slot_exit(s, -9, stopping=False, cgroup_oom=True, enforcer_peak_bytes=None)
    details = exit_details(
        s, info, cgroup_oom=True, enforcer_kind="cgroup-v2", limit_bytes=None, now_mono=920.0
    )
    assert details["oom_enforcement"] == "cgroup-v2"


# --- ExitHandler.handle: performing the decision ----------------------------------------------


class CgroupOOM(WatchdogEnforcer):
    """Stands in for a cgroup that reports an OOM kill and a peak (no cgroup in a unit test)."""

    kind = "cgroup-v2"

    def __init__(self, peak: int) -> None:
        self.peak = peak
        self.released: list[str] = []

    def oom_killed(self, worker_id: str) -> bool:
        return True

    def peak_bytes(self, worker_id: str) -> int | None:
        return self.peak

    def release(self, worker_id: str) -> None:
        self.released.append(worker_id)


class Harness:
    def __init__(self, tmp_path: Path, enforcer: WatchdogEnforcer | None = None) -> None:
        self.spec = RestartSpec(boot_failure_max_tries=2)
        self.clock, self.journal, self.metrics = (
            FakeClock(),
            FakeEventJournal(),
            SupervisorMetrics(),
        )
        self.enforcer = enforcer or WatchdogEnforcer()
        self.crash_loops = CrashLoopTracker(self.spec, self.journal, self.metrics, self.clock)
        self.handler = ExitHandler(
            Settings(home=tmp_path / "home"),
            self.spec,
            self.journal,
            self.metrics,
            self.enforcer,
            MemoryLimits(512 * MB, None),
            WorkerObservers(self.metrics, None),
            self.crash_loops,
            self.clock,
            rng=lambda: 0.5,  # no jitter: the back-off is the initial one doubled per attempt
        )

    async def handle(self, s: Slot, returncode: int, *, stopping: bool = False) -> None:
        self.handler.handle(s, returncode, stopping=stopping, desired={"r1": 2})
        # let the orphan-shipping task (if any) finish: no task outlives the test
        others = asyncio.all_tasks() - {asyncio.current_task()}
        if others:
            await asyncio.wait(others, timeout=30)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.journal.events]

    def counter(self, name: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, {"worker": "w1", "release": "r1"})


async def test_a_crash_is_restarted_after_the_back_off(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    s = slot()
    await h.handle(s, 1)
    assert s.state is S.BACKOFF
    assert (s.attempt, s.restarts, s.backoff_s) == (0, 1, 10.0)
    assert s.restart_at == h.clock.monotonic() + 10.0
    assert s.last_exit is not None
    assert s.last_exit.reason is ExitReason.ERROR
    assert h.kinds() == ["worker_exited", "restart_scheduled"]
    assert h.journal.events[1].details == {
        "backoff_s": 10.0,
        "attempt": 0,
        "restarts": 1,
        "after": "Error",
        "boot_failures": 0,
    }
    assert h.counter("falcon_worker_restarts_total") == 1.0
    # crashing again soon doubles the back-off
    s.state, s.ready_mono = S.READY, h.clock.monotonic()
    h.clock.advance(30)
    await h.handle(s, 1)
    assert (s.attempt, s.restarts, s.backoff_s) == (1, 2, 20.0)


async def test_a_kernel_oom_kill_is_counted_and_the_cgroup_released(tmp_path: Path) -> None:
    enforcer = CgroupOOM(peak=700 * MB)
    h = Harness(tmp_path, enforcer)
    s = slot(peak_rss=500 * MB)
    await h.handle(s, -9)
    assert enforcer.released == ["w1"]
    assert s.last_exit is not None
    assert (s.last_exit.reason, s.last_exit.peak_rss_bytes) == (ExitReason.OOM_KILLED, 700 * MB)
    assert h.counter("falcon_worker_oom_kills_total") == 1.0
    exited = h.journal.events[0]
    assert (exited.details["oom_enforcement"], exited.details["memory_limit_bytes"]) == (
        "cgroup-v2",
        512 * MB,
    )
    assert s.state is S.BACKOFF


async def test_a_retiring_worker_is_retired_not_restarted(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    s = slot(S.DRAINING, retiring=True)
    await h.handle(s, 0)
    assert s.state is S.STOPPED
    assert h.kinds() == ["worker_exited"]
    assert h.counter("falcon_worker_restarts_total") is None


async def test_a_surge_worker_that_never_served_is_dropped(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    s = slot(S.STARTING, ready=False, surge=True)
    await h.handle(s, 78)
    assert s.state is S.STOPPED


async def test_a_recycled_worker_is_replaced_at_once_without_a_restart(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    s = slot(S.DRAINING, recycling=True)
    await h.handle(s, 0)
    assert s.state is S.BACKOFF
    assert (s.restart_at, s.backoff_s, s.recycles, s.restarts) == (h.clock.monotonic(), 0.0, 1, 0)
    assert h.kinds() == ["worker_exited"]


async def test_boot_failures_give_up_after_the_maximum(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    s = slot(S.STARTING, ready=False)
    s.boot_message = "ConfigError: bad value"
    await h.handle(s, 78)
    assert (s.state, s.boot_failures) == (S.BACKOFF, 1)
    s.state = S.STARTING
    await h.handle(s, 78)
    assert (s.state, s.boot_failures) == (S.FAILED, 2)
    gave_up = h.journal.events[-1]
    assert gave_up.kind == "worker_gave_up"
    assert gave_up.details == {
        "boot_failures": 2,
        "reason": "ConfigError: bad value",
        "hint": "fix the cause, then `falcon restart`",
    }
