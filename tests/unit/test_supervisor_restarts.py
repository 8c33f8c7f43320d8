"""Pure runtime decisions: lifecycle table, back-off, crash loop, exit classification, memory, plan."""

from __future__ import annotations

from pathlib import Path

import pytest

from falcon_platform.config import memory
from falcon_platform.config.spec import RestartSpec
from falcon_platform.errors import RuntimeStateError
from falcon_platform.supervisor import restarts
from falcon_platform.supervisor.lifecycle import TRANSITIONS, WorkerEvent, WorkerState, apply
from falcon_platform.supervisor.plan import NewSlot, Retire, SlotView, Spawn, plan

S = WorkerState


def test_lifecycle_happy_path_and_crash() -> None:
    """A slot goes new -> starting -> ready -> exited -> backoff -> starting, as in the table."""
    state = apply(S.NEW, WorkerEvent.SPAWN)
    assert state is S.STARTING
    state = apply(state, WorkerEvent.READY)
    assert state is S.READY
    state = apply(state, WorkerEvent.EXIT)
    assert state is S.EXITED
    assert apply(state, WorkerEvent.SCHEDULE_RESTART) is S.BACKOFF
    assert apply(S.BACKOFF, WorkerEvent.SPAWN) is S.STARTING


def test_lifecycle_rejects_moves_not_in_table() -> None:
    """An invalid move raises RuntimeStateError naming the event and the state."""
    with pytest.raises(RuntimeStateError, match="'ready' in state 'stopped'"):
        apply(S.STOPPED, WorkerEvent.READY)
    with pytest.raises(RuntimeStateError):
        apply(S.READY, WorkerEvent.SPAWN)  # a live process cannot be spawned twice


def test_stopped_is_terminal() -> None:
    """Nothing leaves STOPPED: a retired slot is never revived."""
    assert not [key for key in TRANSITIONS if key[0] is S.STOPPED]


def test_backoff_doubles_from_initial_to_cap_kubernetes_defaults() -> None:
    """10 s doubling to 5 min (u=0.5 means no jitter)."""
    spec = RestartSpec()
    delays = [restarts.backoff_delay(n, spec, u=0.5) for n in range(7)]
    assert delays == [10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0]


def test_backoff_jitter_stays_within_bounds() -> None:
    """Jitter spreads the delay by +-jitter, never beyond."""
    spec = RestartSpec(jitter=0.2)
    assert restarts.backoff_delay(0, spec, u=0.0) == pytest.approx(8.0)
    assert restarts.backoff_delay(0, spec, u=0.999999) == pytest.approx(12.0, rel=1e-4)


def test_backoff_resets_after_healthy_period() -> None:
    """After reset_after seconds of health the next restart starts from the initial delay."""
    spec = RestartSpec()
    assert restarts.next_attempt(4, healthy_for_s=599, spec=spec) == 5
    assert restarts.next_attempt(4, healthy_for_s=600, spec=spec) == 0


def test_crash_loop_counts_restarts_within_window() -> None:
    """crash_loop_restarts restarts inside crash_loop_window = CrashLoopBackOff; older ones age out."""
    spec = RestartSpec(crash_loop_restarts=3, crash_loop_window=60)
    assert not restarts.crash_looping([0, 10], now=20, spec=spec)
    assert restarts.crash_looping([0, 10, 20], now=20, spec=spec)
    assert not restarts.crash_looping([0, 10, 20], now=75, spec=spec)


def test_boot_failures_give_up_after_max_tries() -> None:
    spec = RestartSpec(boot_failure_max_tries=3)
    assert not restarts.give_up_after_boot_failure(2, spec)
    assert restarts.give_up_after_boot_failure(3, spec)


@pytest.mark.parametrize(
    ("returncode", "kwargs", "code", "reason", "sig"),
    [
        (
            -9,
            {"oom_killed": True, "was_ready": True, "expected": False},
            137,
            "OOMKilled",
            "SIGKILL",
        ),
        (
            -9,
            {"oom_killed": False, "was_ready": True, "expected": False},
            137,
            "Signaled",
            "SIGKILL",
        ),
        (0, {"oom_killed": False, "was_ready": True, "expected": True}, 0, "Stopped", None),
        (78, {"oom_killed": False, "was_ready": False, "expected": False}, 78, "BootFailed", None),
        (1, {"oom_killed": False, "was_ready": True, "expected": False}, 1, "Error", None),
        (
            0,
            {"oom_killed": False, "was_ready": True, "expected": False, "recycled": True},
            0,
            "Recycled",
            None,
        ),
        (
            -15,
            {"oom_killed": False, "was_ready": True, "expected": False, "liveness_killed": True},
            143,
            "LivenessKilled",
            "SIGTERM",
        ),
    ],
)
def test_classify_exit(
    returncode: int, kwargs: dict[str, bool], code: int, reason: str, sig: str | None
) -> None:
    """Exit codes follow the shell/Kubernetes convention (128+signal; OOMKilled is 137)."""
    info = restarts.classify_exit(returncode, peak_rss_bytes=123, **kwargs)
    assert (info.exit_code, info.reason.value, info.signal) == (code, reason, sig)
    assert info.peak_rss_bytes == 123


def test_memory_limits_env_overrides_spec_and_zero_turns_off() -> None:
    """FALCON_MEMORY_LIMIT_MB / _SOFT_LIMIT_PERCENT override the spec; 0 disables."""
    limits = memory.memory_limits(512, 80, None, None)
    assert limits.limit_bytes == 512 * 2**20
    assert limits.soft_bytes == 512 * 2**20 * 80 // 100
    assert memory.memory_limits(512, 80, 256, None).limit_bytes == 256 * 2**20
    assert memory.memory_limits(512, 80, None, 0).soft_bytes is None
    assert memory.memory_limits(512, 80, 0, None) == memory.MemoryLimits(None, None)


def test_memory_action_soft_recycles_hard_kills_only_without_kernel() -> None:
    """Soft limit -> graceful recycle; hard limit -> SIGKILL by the watchdog unless a cgroup enforces it."""
    limits = memory.MemoryLimits(limit_bytes=1000, soft_bytes=800)
    act = memory.memory_action
    assert (
        act(700, limits, kernel_enforced=False, already_recycling=False) is memory.MemoryAction.NONE
    )
    assert (
        act(800, limits, kernel_enforced=False, already_recycling=False)
        is memory.MemoryAction.RECYCLE
    )
    assert (
        act(800, limits, kernel_enforced=False, already_recycling=True) is memory.MemoryAction.NONE
    )
    assert (
        act(1000, limits, kernel_enforced=False, already_recycling=True) is memory.MemoryAction.KILL
    )
    assert (
        act(1000, limits, kernel_enforced=True, already_recycling=True) is memory.MemoryAction.NONE
    )


def test_plan_creates_missing_slots_per_release() -> None:
    """Desired is a mapping: each release gets its own count (stable + canary side by side)."""
    observed = [SlotView("w1", "r1", S.READY, index=1)]
    actions = plan({"r1": 2, "r2": 1}, observed, now=0.0)
    assert sorted(actions, key=repr) == sorted([NewSlot("r1"), NewSlot("r2")], key=repr)


def test_plan_retires_idle_slots_first_and_newest_first() -> None:
    """Scaling down drops slots doing no work before ready ones; among ready, the newest."""
    observed = [
        SlotView("w1", "r1", S.READY, index=1),
        SlotView("w2", "r1", S.READY, index=2),
        SlotView("w3", "r1", S.BACKOFF, restart_at=99.0, index=3),
    ]
    assert plan({"r1": 1}, observed, now=0.0) == [Retire("w3"), Retire("w2")]


def test_plan_spawns_backoff_slots_only_when_due() -> None:
    observed = [SlotView("w1", "r1", S.BACKOFF, restart_at=10.0, index=1)]
    assert plan({"r1": 1}, observed, now=9.9) == []
    assert plan({"r1": 1}, observed, now=10.0) == [Spawn("w1")]


def test_plan_does_not_replace_failed_slot() -> None:
    """A boot-failed slot keeps its place: no fresh slot, so no tight loop under another name."""
    observed = [SlotView("w1", "r1", S.FAILED, index=1)]
    assert plan({"r1": 1}, observed, now=0.0) == []


def test_plan_ignores_surge_and_retiring_slots_in_counts() -> None:
    """During a rolling restart the extra (surge) slot and the draining old one do not count."""
    observed = [
        SlotView("w1", "r1", S.DRAINING, retiring=True, index=1),
        SlotView("w2", "r1", S.READY, index=2),
        SlotView("w3", "r1", S.STARTING, surge=True, index=3),
    ]
    assert plan({"r1": 1}, observed, now=0.0) == []
    assert plan({"r1": 2}, observed, now=0.0) == [NewSlot("r1")]


def _exit(during_boot: bool) -> restarts.ExitInfo:
    return restarts.classify_exit(
        78 if during_boot else -9, oom_killed=False, was_ready=not during_boot, expected=False
    )


def test_decide_after_exit_crash_backs_off_and_doubles() -> None:
    """A crash restarts after the back-off; the next one waits twice as long."""
    spec = RestartSpec()
    first = restarts.decide_after_exit(
        _exit(False), retiring=False, recycling=False, previous_attempt=-1, boot_failures=0,
        healthy_for_s=30, spec=spec, u=0.5,
    )  # fmt: skip
    assert (first.action, first.delay_s, first.attempt) == (restarts.AfterExit.RESTART, 10.0, 0)
    second = restarts.decide_after_exit(
        _exit(False), retiring=False, recycling=False, previous_attempt=first.attempt,
        boot_failures=0, healthy_for_s=30, spec=spec, u=0.5,
    )  # fmt: skip
    assert second.delay_s == 20.0


def test_decide_after_exit_boot_failures_give_up_and_retire_wins() -> None:
    """The third boot failure gives up; a worker asked to go is retired whatever its exit;
    a recycled one is replaced at once."""
    spec = RestartSpec(boot_failure_max_tries=3)
    common = {"previous_attempt": 1, "healthy_for_s": 0.0, "spec": spec, "u": 0.5}
    third = restarts.decide_after_exit(
        _exit(True), retiring=False, recycling=False, boot_failures=2, **common
    )
    assert (third.action, third.boot_failures) == (restarts.AfterExit.GIVE_UP, 3)
    second = restarts.decide_after_exit(
        _exit(True), retiring=False, recycling=False, boot_failures=1, **common
    )
    assert second.action is restarts.AfterExit.RESTART
    assert second.boot_failures == 2
    gone = restarts.decide_after_exit(
        _exit(True), retiring=True, recycling=False, boot_failures=2, **common
    )
    assert gone.action is restarts.AfterExit.RETIRE
    recycled = restarts.decide_after_exit(
        _exit(False), retiring=False, recycling=True, boot_failures=0, **common
    )
    assert (recycled.action, recycled.delay_s) == (restarts.AfterExit.REPLACE, 0.0)


def test_public_socket_in_use_says_what_to_do() -> None:
    """A second supervisor on the same port fails with a message naming the fix, not a traceback."""
    from falcon_platform.supervisor.supervisor import open_public_socket

    first = open_public_socket("127.0.0.1", 0)
    try:
        port = first.getsockname()[1]
        with pytest.raises(RuntimeStateError, match=r"already in use.*FALCON_PORT"):
            open_public_socket("127.0.0.1", port)
    finally:
        first.close()


def test_admin_sockets_move_to_tmp_when_run_dir_is_too_deep(tmp_path: Path) -> None:
    """AF_UNIX paths are limited to 108 bytes: a deep FALCON_HOME must still work."""
    from falcon_platform.supervisor.supervisor import admin_socket_dir

    assert admin_socket_dir(tmp_path / "run") == tmp_path / "run" / "workers"
    deep = tmp_path / ("x" * 120) / "run"
    moved = admin_socket_dir(deep)
    assert len(str(moved / "w9999.sock")) <= 100
    assert moved == admin_socket_dir(deep)  # stable: the same home always maps to the same dir
