"""What the supervisor reports (``supervisor.status``): the health line, a worker's status row,
the state gauges and the SLI points, for hand-built slots. Expected values are written out
here, not computed by the module."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from falcon_platform.config.memory import MemoryLimits
from falcon_platform.supervisor.fleet_metrics import SupervisorMetrics
from falcon_platform.supervisor.lifecycle import WorkerState
from falcon_platform.supervisor.restarts import ExitInfo, ExitReason
from falcon_platform.supervisor.slots import Slot
from falcon_platform.supervisor.status import (
    display_state,
    health,
    supervisor_points,
    update_gauges,
    worker_status,
)
from falcon_platform.worker.zygote import ReparentedProcess

S = WorkerState
MB = 1_048_576


def slot(slot_id: str, state: WorkerState, *, release: str = "r1", retiring: bool = False) -> Slot:
    s = Slot(slot_id, release, int(slot_id[1:]), Path(f"/nonexistent/{slot_id}.sock"))
    s.state = state
    s.retiring = retiring
    return s


# --- health ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("desired", "slots", "loops", "stopping", "expected"),
    [
        ({"r1": 2}, [slot("w1", S.READY), slot("w2", S.READY)], {}, False,
         (True, "2/2 workers ready")),
        # more ready than desired (a surge worker) is still healthy
        ({"r1": 1}, [slot("w1", S.READY), slot("w2", S.READY)], {}, False,
         (True, "2/1 workers ready")),
        ({"r1": 2}, [slot("w1", S.READY), slot("w2", S.STARTING)], {}, False,
         (False, "1/2 workers ready")),
        # a retiring worker is ready but does not count: it is on its way out
        ({"r1": 2}, [slot("w1", S.READY), slot("w2", S.READY, retiring=True)], {}, False,
         (False, "1/2 workers ready")),
        # nothing desired is never healthy (an empty pool serves nobody)
        ({}, [], {}, False, (False, "no workers desired")),
        ({"r1": 0}, [slot("w1", S.READY)], {}, False, (False, "no workers desired")),
        # stopping wins over everything, even a full pool
        ({"r1": 1}, [slot("w1", S.READY)], {}, True,
         (False, "supervisor is stopping; 1/1 workers ready")),
        # crash loops are named sorted, only the ones that are on
        ({"r1": 1, "r2": 1}, [slot("w1", S.BACKOFF), slot("w2", S.BACKOFF, release="r2")],
         {"r2": True, "r1": True, "r3": False}, False,
         (False, "0/2 workers ready; CrashLoopBackOff in release r1, r2")),
        ({"r1": 2}, [slot("w1", S.FAILED), slot("w2", S.FAILED)], {}, False,
         (False, "0/2 workers ready; boot failed (not retried): w1, w2")),
        ({"r1": 2}, [slot("w1", S.FAILED), slot("w2", S.BACKOFF)], {"r1": True}, False,
         (False, "0/2 workers ready; CrashLoopBackOff in release r1; "
                 "boot failed (not retried): w1")),
        # desired summed over releases
        ({"r1": 1, "r2": 1}, [slot("w1", S.READY), slot("w2", S.READY, release="r2")], {},
         False, (True, "2/2 workers ready")),
    ],
)  # fmt: skip
def test_health_line(
    desired: dict[str, int],
    slots: list[Slot],
    loops: dict[str, bool],
    stopping: bool,
    expected: tuple[bool, str],
) -> None:
    assert health(desired, slots, loops, stopping=stopping) == expected


@pytest.mark.parametrize(
    ("state", "release", "loops", "expected"),
    [
        (S.BACKOFF, "r1", {"r1": True}, "CrashLoopBackOff"),
        (S.BACKOFF, "r1", {"r1": False}, "backoff"),
        (S.BACKOFF, "r1", {"r2": True}, "backoff"),  # another release's loop is not ours
        (S.READY, "r1", {"r1": True}, "ready"),  # only a waiting slot is "CrashLoopBackOff"
        (S.STARTING, "r1", {"r1": True}, "starting"),
        (S.FAILED, "r1", {}, "failed"),
    ],
)
def test_display_state_uses_kubernetes_wording_only_while_backing_off(
    state: WorkerState, release: str, loops: dict[str, bool], expected: str
) -> None:
    assert display_state(slot("w1", state, release=release), loops) == expected


# --- worker rows ------------------------------------------------------------------------------


def test_a_ready_workers_row() -> None:
    s = slot("w2", S.READY)
    s.proc = ReparentedProcess(4242)  # only its pid is read
    s.started_mono, s.ready_mono = 100.0, 101.0
    s.rss_bytes, s.peak_rss_bytes, s.pss_bytes, s.uss_bytes = 300 * MB, 310 * MB, 200 * MB, 150 * MB
    s.peak_pss_bytes = 210 * MB
    s.restarts, s.recycles = 2, 1
    row = worker_status(s, MemoryLimits(512 * MB, 400 * MB), {}, now_wall=5000.0, now_mono=160.5)
    assert row == {
        "worker": "w2",
        "pid": 4242,
        "release": "r1",
        "state": "ready",
        "ready": True,
        "rss_bytes": 300 * MB,
        "peak_rss_bytes": 310 * MB,
        "pss_bytes": 200 * MB,
        "uss_bytes": 150 * MB,
        "peak_pss_bytes": 210 * MB,
        "memory_limit_bytes": 512 * MB,
        "restarts": 2,
        "recycles": 1,
        "uptime_s": 60.5,
        "restart_in_s": None,
        "last_exit": None,
        "last_exit_reason": None,
        "boot_message": None,
        "boot_failures": 0,
        "retiring": False,
        "surge": False,
    }


def test_a_crash_looping_workers_row_says_when_it_restarts_and_why_it_exited() -> None:
    s = slot("w1", S.BACKOFF)
    s.proc = ReparentedProcess(99)  # reaped: a BACKOFF slot shows no pid and no memory
    s.rss_bytes, s.pss_bytes = 123, 45
    s.started_mono = 10.0
    s.restart_at = 130.0
    s.last_exit = ExitInfo(137, "SIGKILL", ExitReason.OOM_KILLED, True, 600 * MB, False, False)
    s.last_exit_wall = 4990.0
    row = worker_status(s, MemoryLimits(None, None), {"r1": True}, now_wall=5000.0, now_mono=100.0)
    assert row["state"] == "CrashLoopBackOff"
    assert row["ready"] is False
    assert (row["pid"], row["rss_bytes"], row["pss_bytes"], row["uss_bytes"]) == (None,) * 4
    assert row["uptime_s"] is None
    assert row["memory_limit_bytes"] is None
    assert row["restart_in_s"] == 30.0
    assert row["last_exit_reason"] == "OOMKilled"
    assert row["last_exit"] == {
        "exit_code": 137,
        "signal": "SIGKILL",
        "reason": "OOMKilled",
        "oom_killed": True,
        "peak_rss_bytes": 600 * MB,
        "at": 4990.0,
        "ago_s": 10.0,
    }


@pytest.mark.parametrize(
    ("state", "restart_at", "now_mono", "expected"),
    [
        (S.BACKOFF, 130.0, 100.0, 30.0),
        (S.BACKOFF, 130.0, 130.0, 0.0),
        (S.BACKOFF, 130.0, 200.0, 0.0),  # overdue: never negative
        (S.BACKOFF, None, 100.0, None),
        (S.STARTING, 130.0, 100.0, None),  # only a waiting slot has a countdown
    ],
)
def test_restart_countdown(
    state: WorkerState, restart_at: float | None, now_mono: float, expected: float | None
) -> None:
    s = slot("w1", state)
    s.restart_at = restart_at
    row = worker_status(s, MemoryLimits(None, None), {}, now_wall=0.0, now_mono=now_mono)
    assert row["restart_in_s"] == expected


def test_peaks_of_zero_are_reported_as_unknown() -> None:
    row = worker_status(slot("w1", S.STARTING), MemoryLimits(None, None), {}, 0.0, 0.0)
    assert row["peak_rss_bytes"] is None
    assert row["peak_pss_bytes"] is None
    assert row["uptime_s"] is None  # started_mono unknown


# --- gauges -----------------------------------------------------------------------------------


def _samples(metrics: SupervisorMetrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def test_gauges_for_a_pool_mid_rolling_restart() -> None:
    """r1: two ready (one retiring), one crash-looping in back-off; r2: one starting surge
    worker; r3 desired but without any slot yet."""
    old_ready, old_retiring = slot("w1", S.READY), slot("w2", S.READY, retiring=True)
    looping = slot("w3", S.BACKOFF)
    new = slot("w4", S.STARTING, release="r2")
    old_ready.rss_bytes, old_ready.pss_bytes = 100 * MB, 60 * MB
    old_retiring.rss_bytes = 90 * MB  # PSS not sampled yet: no PSS series
    looping.rss_bytes, looping.pss_bytes = 80 * MB, 50 * MB  # stale, not live: no series
    new.rss_bytes = None
    metrics = SupervisorMetrics()
    update_gauges(
        metrics, [old_ready, old_retiring, looping, new], {"r1": 2, "r2": 1, "r3": 1},
        {"r1": True},
    )  # fmt: skip
    assert _samples(metrics, "falcon_workers") == {
        (("release", "r1"), ("state", "ready")): 2.0,
        (("release", "r1"), ("state", "CrashLoopBackOff")): 1.0,
        (("release", "r2"), ("state", "starting")): 1.0,
    }
    assert _samples(metrics, "falcon_workers_desired") == {
        (("release", "r1"),): 2.0,
        (("release", "r2"),): 1.0,
        (("release", "r3"),): 1.0,
    }
    assert _samples(metrics, "falcon_workers_ready") == {
        (("release", "r1"),): 2.0,  # the gauge counts a retiring worker while it still serves
        (("release", "r2"),): 0.0,
        (("release", "r3"),): 0.0,
    }
    assert _samples(metrics, "falcon_worker_resident_memory_bytes") == {
        (("release", "r1"), ("worker", "w1")): 100.0 * MB,
        (("release", "r1"), ("worker", "w2")): 90.0 * MB,
    }
    assert _samples(metrics, "falcon_worker_proportional_memory_bytes") == {
        (("release", "r1"), ("worker", "w1")): 60.0 * MB,
    }


def test_gauges_forget_workers_and_states_that_are_gone() -> None:
    """Each update replaces the per-state and per-worker series (no stale state lingers)."""
    metrics = SupervisorMetrics()
    w1 = slot("w1", S.STARTING)
    w1.rss_bytes = 10
    update_gauges(metrics, [w1], {"r1": 1}, {})
    w1.state = S.EXITED
    update_gauges(metrics, [w1], {"r1": 1}, {})
    assert _samples(metrics, "falcon_workers") == {(("release", "r1"), ("state", "exited")): 1.0}
    assert _samples(metrics, "falcon_worker_resident_memory_bytes") == {}


def test_a_release_no_longer_desired_but_with_slots_reports_zero_desired() -> None:
    metrics = SupervisorMetrics()
    update_gauges(metrics, [slot("w1", S.DRAINING, release="r1")], {"r2": 1}, {})
    assert _samples(metrics, "falcon_workers_desired") == {
        (("release", "r1"),): 0.0,
        (("release", "r2"),): 1.0,
    }


# --- SLI points -------------------------------------------------------------------------------


def test_sli_points_carry_every_sample_but_created_and_each_live_workers_limit() -> None:
    metrics = SupervisorMetrics()
    metrics.restarts.labels(worker="w1", release="r1").inc(3)
    live, dead = slot("w1", S.READY), slot("w2", S.EXITED)
    points = supervisor_points(metrics, [live, dead], MemoryLimits(256 * MB, None))
    assert not [p for p in points if p[0].endswith("_created")]
    by_name = {(name, tuple(sorted(labels.items()))): (v, kind) for name, labels, v, kind in points}
    assert by_name[("falcon_supervisor_up", ())] == (1.0, "gauge")
    assert by_name[("falcon_worker_restarts_total", (("release", "r1"), ("worker", "w1")))] == (
        3.0,
        "counter",
    )
    limits = [p for p in points if p[0] == "falcon_memory_limit_bytes"]
    assert limits == [
        ("falcon_memory_limit_bytes", {"worker": "w1", "release": "r1"}, 256.0 * MB, "gauge")
    ]


def test_sli_points_without_a_memory_limit_have_no_limit_series() -> None:
    points = supervisor_points(SupervisorMetrics(), [slot("w1", S.READY)], MemoryLimits(None, 1))
    assert [p for p in points if p[0] == "falcon_memory_limit_bytes"] == []
    assert all(not math.isnan(p[2]) for p in points)
