"""CrashLoopBackOff ends with the release (issue 11: the critical alert kept firing ~7 minutes
after a successful rollback, until the crash-loop window emptied)."""

from __future__ import annotations

from falcon_platform.config.spec import RestartSpec
from falcon_platform.events.journal import EventKind
from falcon_platform.supervisor.exits import CrashLoopTracker
from falcon_platform.supervisor.fleet_metrics import SupervisorMetrics
from falcon_platform.testing.clock import FakeClock
from falcon_platform.testing.journal import FakeEventJournal

SPEC = RestartSpec(crash_loop_restarts=3, crash_loop_window=600)


def _gauge(metrics: SupervisorMetrics, release: str) -> float | None:
    return metrics.registry.get_sample_value("falcon_crash_loop", {"release": release})


def test_a_retired_release_leaves_crash_loop_at_once_and_says_why() -> None:
    clock, journal, metrics = FakeClock(), FakeEventJournal(), SupervisorMetrics()
    tracker = CrashLoopTracker(SPEC, journal, metrics, clock)
    desired = {"r1": 0, "r2": 2}  # r2 is the bad release
    for _ in range(3):
        clock.advance(10)
        tracker.note_restart("r2", desired)
    assert tracker.looping["r2"] is True
    assert _gauge(metrics, "r2") == 1.0
    # The rollback: r1 gets the workers back, r2 none. 30 s later, well inside the window.
    clock.advance(30)
    tracker.update({"r1": 2, "r2": 0})
    assert tracker.looping["r2"] is False
    assert _gauge(metrics, "r2") == 0.0
    [left] = journal.query(kinds=[EventKind.CRASH_LOOP_LEFT])
    assert left.release == "r2"
    assert left.details["reason"] == "release retired"
    # Deployed again later, it starts with a clean history: one restart is not a loop.
    tracker.note_restart("r2", {"r1": 0, "r2": 2})
    assert tracker.looping["r2"] is False


def test_a_release_still_desired_stays_in_crash_loop_for_the_window() -> None:
    clock, journal, metrics = FakeClock(), FakeEventJournal(), SupervisorMetrics()
    tracker = CrashLoopTracker(SPEC, journal, metrics, clock)
    for _ in range(3):
        clock.advance(10)
        tracker.note_restart("r1", {"r1": 2})
    clock.advance(300)
    tracker.update({"r1": 2})
    assert tracker.looping["r1"] is True
    clock.advance(301)  # the oldest restarts leave the 600 s window
    tracker.update({"r1": 2})
    assert tracker.looping["r1"] is False
    [left] = journal.query(kinds=[EventKind.CRASH_LOOP_LEFT])
    assert "reason" not in left.details
