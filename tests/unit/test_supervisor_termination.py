"""Ending workers (``supervisor.termination``): the deadlines of ``find_unhealthy`` at their
edges, and what ``drain``, ``liveness_kill`` and ``kill_unhealthy`` do to the slot and to a real
process (``sleep``), the journal and the counters.

The one-victim-per-pool rule has its own file, ``test_supervisor_liveness_kills.py``.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from falcon_platform.config.spec import ProbeSpec
from falcon_platform.events.journal import EventKind
from falcon_platform.supervisor.fleet_metrics import SupervisorMetrics
from falcon_platform.supervisor.lifecycle import WorkerState
from falcon_platform.supervisor.restarts import classify_exit
from falcon_platform.supervisor.slots import Slot
from falcon_platform.supervisor.termination import (
    Escalate,
    LivenessKill,
    drain,
    find_unhealthy,
    kill_unhealthy,
    liveness_kill,
    liveness_kill_in_flight,
    signal_worker,
)
from falcon_platform.testing.clock import FakeClock
from falcon_platform.testing.journal import FakeEventJournal
from falcon_platform.worker.zygote import ReparentedProcess

S = WorkerState
PROBES = ProbeSpec(startup_timeout=60.0, failure_threshold=3, kill_grace=5.0)
NOW = 1000.0


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A real child process to signal (``sleep`` ignores nothing: SIGTERM ends it)."""
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def slot(state: WorkerState, *, slot_id: str = "w1", release: str = "r1") -> Slot:
    s = Slot(slot_id, release, int(slot_id[1:]), Path(f"/nonexistent/{slot_id}.sock"))
    s.state = state
    return s


def running(state: WorkerState, proc: subprocess.Popen[bytes] | ReparentedProcess) -> Slot:
    s = slot(state)
    s.proc = proc
    return s


def verdicts(slots: list[Slot], now: float = NOW) -> list[tuple[str, str]]:
    return [
        (v.slot.slot_id, v.why if isinstance(v, LivenessKill) else "escalate")
        for v in find_unhealthy(slots, PROBES, now)
    ]


# --- find_unhealthy: the deadlines ------------------------------------------------------------


@pytest.mark.parametrize(
    ("started_mono", "expected"),
    [
        (NOW - 60.0, []),  # exactly at the timeout: still allowed
        (NOW - 60.001, [("w1", "startup timeout")]),
        (NOW - 10.0, []),
        (None, []),  # not started yet (no process): nothing to time out
    ],
)
def test_startup_timeout_edge(started_mono: float | None, expected: list[tuple[str, str]]) -> None:
    s = slot(S.STARTING)
    s.started_mono = started_mono
    assert verdicts([s]) == expected


def test_a_startup_timeout_says_the_timeout() -> None:
    s = slot(S.STARTING)
    s.started_mono = 0.0
    [verdict] = find_unhealthy([s], PROBES, NOW)
    assert isinstance(verdict, LivenessKill)
    assert verdict.details == {"startup_timeout_s": 60.0}


@pytest.mark.parametrize(
    ("failures", "expected"),
    [
        (0, []),
        (2, []),
        (3, [("w1", "liveness probe failed")]),
        (9, [("w1", "liveness probe failed")]),
    ],
)
def test_failure_threshold_edge(failures: int, expected: list[tuple[str, str]]) -> None:
    s = slot(S.READY)
    s.liveness_failures = failures
    assert verdicts([s]) == expected


@pytest.mark.parametrize("state", [S.STARTING, S.DRAINING, S.KILLING, S.BACKOFF, S.EXITED])
def test_only_ready_workers_are_judged_by_their_probes(state: WorkerState) -> None:
    s = slot(state)
    s.liveness_failures = 10
    s.started_mono = NOW  # no startup timeout either
    assert [v for v in verdicts([s]) if v[1] == "liveness probe failed"] == []


@pytest.mark.parametrize("state", [S.DRAINING, S.KILLING])
@pytest.mark.parametrize(
    ("deadline", "expected"),
    [
        (NOW, [("w1", "escalate")]),  # at the deadline: SIGKILL
        (NOW - 5, [("w1", "escalate")]),
        (NOW + 0.001, []),  # still within its grace
        (None, []),
    ],
)
def test_escalation_deadline_edge(
    state: WorkerState,
    deadline: float | None,
    expected: list[tuple[str, str]],
    sleeper: subprocess.Popen[bytes],
) -> None:
    s = running(state, sleeper)
    s.deadline = deadline
    assert verdicts([s]) == expected


def test_no_escalation_without_a_live_process_or_twice(sleeper: subprocess.Popen[bytes]) -> None:
    no_process = slot(S.DRAINING)
    no_process.deadline = NOW - 1
    assert verdicts([no_process]) == []
    already = running(S.KILLING, sleeper)
    already.deadline = NOW - 1
    already.extra["sigkilled"] = True  # SIGKILL sent on an earlier tick
    assert verdicts([already]) == []
    gone = ReparentedProcess(1)
    gone.returncode = 0  # reaped already
    reaped = running(S.DRAINING, gone)
    reaped.deadline = NOW - 1
    assert verdicts([reaped]) == []


@pytest.mark.parametrize(
    ("state", "liveness_killed", "last_reason", "expected"),
    [
        (S.KILLING, True, None, True),
        (S.KILLING, False, None, False),  # killed for another reason (memory)
        (S.EXITED, False, "liveness", True),
        (S.BACKOFF, False, "liveness", True),
        (S.STARTING, False, "liveness", True),
        (S.READY, False, "liveness", False),  # serving again: the pool may lose another
        (S.BACKOFF, False, "oom", False),
        (S.BACKOFF, False, None, False),
    ],
)
def test_liveness_kill_in_flight(
    state: WorkerState, liveness_killed: bool, last_reason: str | None, expected: bool
) -> None:
    s = slot(state)
    s.liveness_killed = liveness_killed
    if last_reason is not None:
        s.last_exit = classify_exit(
            -15,
            oom_killed=last_reason == "oom",
            was_ready=True,
            expected=False,
            liveness_killed=last_reason == "liveness",
        )
    assert liveness_kill_in_flight(s) is expected


# --- drain and signals, on a real process -----------------------------------------------------


def test_drain_sends_sigterm_once_and_sets_the_deadline(sleeper: subprocess.Popen[bytes]) -> None:
    s = running(S.READY, sleeper)
    drain(s, deadline=1030.0, retiring=True)
    assert s.state is S.DRAINING
    assert (s.deadline, s.retiring, s.recycling) == (1030.0, True, False)
    assert sleeper.wait(timeout=10) == -signal.SIGTERM
    # A second drain (say, shutdown during a rolling restart) changes nothing: not the
    # deadline, not the flags already set.
    drain(s, deadline=2000.0, recycling=True)
    assert (s.deadline, s.retiring, s.recycling) == (1030.0, True, False)


def test_drain_keeps_flags_set_earlier() -> None:
    s = slot(S.STARTING)
    s.recycling = True
    drain(s, deadline=5.0, retiring=False, recycling=False)
    assert (s.state, s.recycling, s.retiring) == (S.DRAINING, True, False)


def test_drain_leaves_a_worker_being_killed_alone() -> None:
    s = slot(S.KILLING)
    s.deadline = 7.0
    drain(s, deadline=99.0)
    assert (s.state, s.deadline) == (S.KILLING, 7.0)


def test_signalling_a_reaped_or_absent_process_does_nothing(
    sleeper: subprocess.Popen[bytes],
) -> None:
    signal_worker(slot(S.NEW), signal.SIGTERM)  # no process
    sleeper.kill()
    sleeper.wait(timeout=10)
    signal_worker(running(S.DRAINING, sleeper), signal.SIGTERM)  # reaped: pid may be reused


def test_a_liveness_kill_terminates_counts_and_journals(sleeper: subprocess.Popen[bytes]) -> None:
    clock, metrics, journal = FakeClock(), SupervisorMetrics(), FakeEventJournal()
    s = running(S.READY, sleeper)
    liveness_kill(
        s,
        why="liveness probe failed",
        details={"failures": 3},
        kill_grace=5.0,
        clock=clock,
        metrics=metrics,
        journal=journal,
    )
    assert (s.state, s.liveness_killed) == (S.KILLING, True)
    assert s.deadline == clock.monotonic() + 5.0
    assert sleeper.wait(timeout=10) == -signal.SIGTERM
    value = metrics.registry.get_sample_value(
        "falcon_worker_liveness_kills_total", {"worker": "w1", "release": "r1"}
    )
    assert value == 1.0
    [event] = journal.events
    assert (event.kind, event.worker, event.release) == ("liveness_kill", "w1", "r1")
    assert event.details == {
        "pid": sleeper.pid,
        "why": "liveness probe failed",
        "kill_grace_s": 5.0,
        "failures": 3,
    }
    # Already being killed: a second verdict does not restart the grace or count again.
    clock.advance(3)
    liveness_kill(
        s, why="again", details={}, kill_grace=5.0, clock=clock, metrics=metrics, journal=journal
    )
    assert len(journal.events) == 1
    assert s.deadline == clock.monotonic() - 3 + 5.0


def test_kill_unhealthy_escalates_to_sigkill_once(tmp_path: Path) -> None:
    """A worker that ignores SIGTERM (here: a shell that traps it) gets SIGKILL at its
    deadline, and only one."""
    ready = tmp_path / "trapped"
    proc = subprocess.Popen(
        ["sh", "-c", f"trap '' TERM; touch {ready}; while :; do sleep 0.05; done"]
    )
    try:
        _wait_for_file(ready)
        clock, metrics, journal = FakeClock(), SupervisorMetrics(), FakeEventJournal()
        s = running(S.READY, proc)
        drain(s, deadline=NOW)
        assert proc.poll() is None  # SIGTERM ignored
        kill_unhealthy([s], PROBES, NOW - 1, clock=clock, metrics=metrics, journal=journal)
        assert proc.poll() is None  # within the grace: nothing
        kill_unhealthy([s], PROBES, NOW, clock=clock, metrics=metrics, journal=journal)
        assert proc.wait(timeout=10) == -signal.SIGKILL
        assert s.extra["sigkilled"] is True
        assert find_unhealthy([s], PROBES, NOW + 10) == []
        assert journal.events == []  # escalation is logged, not journaled (the exit is)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def test_a_deferred_kill_is_journaled_once_per_process() -> None:
    clock, metrics, journal = FakeClock(), SupervisorMetrics(), FakeEventJournal()
    victim = slot(S.READY, slot_id="w1")
    other = slot(S.READY, slot_id="w2")
    victim.liveness_failures, other.liveness_failures = 5, 3
    victim.ready_mono = other.ready_mono = 0.0
    for _ in range(3):  # three ticks
        kill_unhealthy([victim, other], PROBES, NOW, clock=clock, metrics=metrics, journal=journal)
    kinds = [(e.kind, e.worker) for e in journal.events]
    assert kinds == [
        (EventKind.LIVENESS_KILL_DEFERRED.value, "w2"),
        (EventKind.LIVENESS_KILL.value, "w1"),
    ]
    assert victim.state is S.KILLING
    assert other.state is S.READY


def test_verdict_types() -> None:
    """One verdict per slot: a startup timeout and an escalation in one tick."""
    late = slot(S.STARTING, slot_id="w1")
    late.started_mono = 0.0
    stuck = slot(S.DRAINING, slot_id="w2")
    stuck.deadline = 0.0
    stuck.proc = ReparentedProcess(2**22 + 1)  # never reaped here: returncode None
    found = find_unhealthy([late, stuck], PROBES, NOW)
    assert [type(v) for v in found] == [LivenessKill, Escalate]


def _wait_for_file(path: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)
