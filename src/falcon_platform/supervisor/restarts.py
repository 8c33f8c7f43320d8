"""Pure restart, back-off, crash-loop, exit and memory decisions (no I/O, ``now`` passed in).

Kubernetes semantics on purpose, so what an operator learns here holds on a cluster::

    backoff_delay(0, spec.restart, u=0.5)   # 10.0 (initial back-off, no jitter at u=0.5)
    backoff_delay(3, spec.restart, u=0.5)   # 80.0 (doubling) ... capped at max_backoff (300)
    classify_exit(-9, oom_killed=True, ...)  # ExitInfo(exit_code=137, reason="OOMKilled")
"""

from __future__ import annotations

import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from falcon_platform.config.spec import RestartSpec

OOM_EXIT_CODE = 137  # 128 + SIGKILL, what Kubernetes reports for OOMKilled


class ExitReason(StrEnum):
    OOM_KILLED = "OOMKilled"
    LIVENESS_KILLED = "LivenessKilled"
    RECYCLED = "Recycled"  # soft memory limit: drained and replaced
    STOPPED = "Stopped"  # drained on purpose (restart, scale down, shutdown)
    BOOT_FAILED = "BootFailed"
    ERROR = "Error"  # non-zero exit
    SIGNALED = "Signaled"  # killed by a signal nobody here sent (e.g. kill -9 by hand)
    COMPLETED = "Completed"  # exit 0 that nobody asked for


@dataclass(frozen=True, slots=True)
class ExitInfo:
    exit_code: int  # shell convention: 128 + signal for a signal
    signal: str | None
    reason: ExitReason
    oom_killed: bool
    peak_rss_bytes: int | None
    during_boot: bool
    expected: bool  # the supervisor asked for it (drain / recycle / shutdown)


def classify_exit(
    returncode: int,
    *,
    oom_killed: bool,
    was_ready: bool,
    expected: bool,
    liveness_killed: bool = False,
    recycled: bool = False,
    peak_rss_bytes: int | None = None,
) -> ExitInfo:
    """Turn a ``Popen.returncode`` (negative = signal) and what the supervisor knows into an exit record."""
    sig_name: str | None = None
    if returncode < 0:
        sig_name = signal.Signals(-returncode).name
        code = 128 - returncode
    else:
        code = returncode
    if oom_killed:
        reason = ExitReason.OOM_KILLED
        code = OOM_EXIT_CODE
    elif liveness_killed:
        reason = ExitReason.LIVENESS_KILLED
    elif recycled:
        reason = ExitReason.RECYCLED
    elif expected:
        reason = ExitReason.STOPPED
    elif not was_ready and sig_name is None:
        reason = ExitReason.BOOT_FAILED
    elif sig_name is not None:
        reason = ExitReason.SIGNALED
    elif code == 0:
        reason = ExitReason.COMPLETED
    else:
        reason = ExitReason.ERROR
    return ExitInfo(
        exit_code=code,
        signal=sig_name,
        reason=reason,
        oom_killed=oom_killed,
        peak_rss_bytes=peak_rss_bytes,
        during_boot=not was_ready,
        expected=expected and not oom_killed,
    )


def backoff_delay(attempt: int, spec: RestartSpec, u: float) -> float:
    """Delay before restart number ``attempt`` (0-based): initial x 2**attempt, capped, with jitter.

    ``u`` is a uniform sample in [0, 1) supplied by the caller (pure: the shell owns randomness);
    jitter spreads the delay by +-``spec.jitter`` so a pool killed together does not restart together.
    """
    base = min(spec.initial_backoff * (2.0 ** min(attempt, 62)), spec.max_backoff)
    return max(0.0, base * (1.0 + spec.jitter * (2.0 * u - 1.0)))


def next_attempt(previous_attempt: int, healthy_for_s: float, spec: RestartSpec) -> int:
    """The back-off attempt number after an exit: reset to 0 after ``reset_after`` of health."""
    if healthy_for_s >= spec.reset_after:
        return 0
    return previous_attempt + 1


def recent_restarts(restart_times: Sequence[float], now: float, spec: RestartSpec) -> int:
    return sum(1 for t in restart_times if now - t <= spec.crash_loop_window)


def crash_looping(restart_times: Sequence[float], now: float, spec: RestartSpec) -> bool:
    """CrashLoopBackOff: at least ``crash_loop_restarts`` restarts within ``crash_loop_window``."""
    return recent_restarts(restart_times, now, spec) >= spec.crash_loop_restarts


def release_retired(desired: Mapping[str, int], release: str) -> bool:
    """No worker of ``release`` is wanted any more: whatever it did, it is not looping now."""
    return desired.get(release, 0) <= 0


def give_up_after_boot_failure(consecutive_boot_failures: int, spec: RestartSpec) -> bool:
    """Boot failures are not retried forever: stop after ``boot_failure_max_tries``."""
    return consecutive_boot_failures >= spec.boot_failure_max_tries


class AfterExit(StrEnum):
    RETIRE = "retire"  # it was asked to go (scale down, rolling restart, shutdown)
    REPLACE = "replace"  # planned recycle: start a new process at once, no back-off
    RESTART = "restart"  # crash: start again after the back-off
    GIVE_UP = "give_up"  # boot failed too often: leave it failed, say why


@dataclass(frozen=True, slots=True)
class ExitDecision:
    action: AfterExit
    delay_s: float = 0.0
    attempt: int = -1
    boot_failures: int = 0


def decide_after_exit(
    info: ExitInfo,
    *,
    retiring: bool,
    recycling: bool,
    previous_attempt: int,
    boot_failures: int,
    healthy_for_s: float,
    spec: RestartSpec,
    u: float,
) -> ExitDecision:
    """What happens to a slot whose process exited (the supervisor performs it).

    ``decide_after_exit(boot_failure_info, ..., boot_failures=2, spec=RestartSpec())``
    -> ``ExitDecision(GIVE_UP, boot_failures=3)``; a crash after 10 minutes of health
    restarts from the initial back-off again.
    """
    if retiring:
        return ExitDecision(AfterExit.RETIRE, attempt=previous_attempt, boot_failures=boot_failures)
    if recycling:
        return ExitDecision(
            AfterExit.REPLACE, attempt=previous_attempt, boot_failures=boot_failures
        )
    failures = boot_failures + 1 if info.during_boot else boot_failures
    if info.during_boot and give_up_after_boot_failure(failures, spec):
        return ExitDecision(AfterExit.GIVE_UP, attempt=previous_attempt, boot_failures=failures)
    attempt = next_attempt(previous_attempt, healthy_for_s, spec)
    return ExitDecision(AfterExit.RESTART, backoff_delay(attempt, spec, u), attempt, failures)
