"""Liveness kills take at most one worker of a pool at a time (issue 11, finding 1).

A connection flood made every worker's private health check fail at once and the supervisor
killed both workers together: about 10 s with no worker. ``find_unhealthy`` now picks one
victim per release and leaves the rest of the pool alone until that one serves again.
"""

from __future__ import annotations

from pathlib import Path

from falcon_platform.config.spec import ProbeSpec
from falcon_platform.supervisor.lifecycle import WorkerState
from falcon_platform.supervisor.restarts import classify_exit
from falcon_platform.supervisor.slots import Slot
from falcon_platform.supervisor.termination import (
    Escalate,
    LivenessKill,
    deferred_liveness_kills,
    find_unhealthy,
    liveness_kill_in_flight,
)

PROBES = ProbeSpec(failure_threshold=3)
NOW = 1000.0


def slot(
    slot_id: str,
    *,
    release: str = "r1",
    state: WorkerState = WorkerState.READY,
    failures: int = 0,
    ready_mono: float = 100.0,
) -> Slot:
    index = int(slot_id[1:])
    s = Slot(slot_id, release, index, Path(f"/nonexistent/{slot_id}.sock"), state=state)
    s.liveness_failures = failures
    s.ready_mono = ready_mono if state is WorkerState.READY else None
    s.started_mono = 50.0
    return s


def killed(verdicts: list[LivenessKill | Escalate]) -> list[str]:
    return sorted(v.slot.slot_id for v in verdicts if isinstance(v, LivenessKill))


def test_one_hung_worker_among_healthy_ones_is_killed() -> None:
    slots = [slot("w1", failures=3), slot("w2"), slot("w3")]
    assert killed(find_unhealthy(slots, PROBES, NOW)) == ["w1"]


def test_a_whole_pool_failing_together_loses_one_worker_not_all() -> None:
    """Both workers fail their probes at the same moment (the flood): one verdict, for the
    one with most failures; the other is reported as deferred."""
    slots = [slot("w1", failures=3), slot("w2", failures=4)]
    verdicts = find_unhealthy(slots, PROBES, NOW)
    assert killed(verdicts) == ["w2"]
    assert [s.slot_id for s in deferred_liveness_kills(slots, verdicts, PROBES)] == ["w1"]


def test_equal_failures_kill_the_worker_ready_longest() -> None:
    slots = [slot("w1", failures=3, ready_mono=500.0), slot("w2", failures=3, ready_mono=200.0)]
    assert killed(find_unhealthy(slots, PROBES, NOW)) == ["w2"]


def test_no_second_kill_while_the_first_victim_is_being_killed_or_restarted() -> None:
    """The first victim KILLING, then EXITED/BACKOFF/STARTING after a liveness kill: the
    second sick worker of the pool waits; once the victim is READY it may go."""
    victim = slot("w1", state=WorkerState.KILLING)
    victim.liveness_killed = True
    other = slot("w2", failures=6)
    assert killed(find_unhealthy([victim, other], PROBES, NOW)) == []
    victim.last_exit = classify_exit(
        -15, oom_killed=False, was_ready=True, expected=False, liveness_killed=True
    )
    victim.started_mono = NOW  # restarted just now: no startup timeout
    for state in (WorkerState.EXITED, WorkerState.BACKOFF, WorkerState.STARTING):
        victim.state = state
        assert liveness_kill_in_flight(victim)
        assert killed(find_unhealthy([victim, other], PROBES, NOW)) == [], state
    victim.state = WorkerState.READY
    victim.ready_mono = NOW
    assert not liveness_kill_in_flight(victim)
    assert killed(find_unhealthy([victim, other], PROBES, NOW)) == ["w2"]


def test_pools_are_independent() -> None:
    """A stable and a canary release each lose at most one worker."""
    slots = [
        slot("w1", failures=3),
        slot("w2", failures=3),
        slot("w3", release="r2", failures=3),
        slot("w4", release="r2", failures=5),
    ]
    assert killed(find_unhealthy(slots, PROBES, NOW)) == ["w1", "w4"]


def test_an_earlier_crash_for_another_reason_does_not_block_a_liveness_kill() -> None:
    """Only a liveness kill in flight defers others: an OOM-killed worker restarting does not."""
    oom = slot("w1", state=WorkerState.BACKOFF)
    oom.last_exit = classify_exit(-9, oom_killed=True, was_ready=True, expected=False)
    assert killed(find_unhealthy([oom, slot("w2", failures=3)], PROBES, NOW)) == ["w2"]


def test_startup_timeouts_are_not_limited() -> None:
    """A worker that never started serving is not part of the pool's capacity."""
    late = [slot(f"w{i}", state=WorkerState.STARTING) for i in (1, 2)]
    for s in late:
        s.started_mono = NOW - PROBES.startup_timeout - 1
    assert killed(find_unhealthy(late, PROBES, NOW)) == ["w1", "w2"]
