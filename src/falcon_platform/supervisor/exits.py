"""After a worker exits: classify the exit, record it, and retire, replace, restart (after its
back-off) or give up on its slot; track restarts per release for CrashLoopBackOff.

The decisions are ``restarts.classify_exit`` and ``restarts.decide_after_exit``, fed by the
pure helpers here (:func:`classify_slot_exit`, :func:`leaves_pool`, :func:`exit_details`,
:func:`may_leave_orphans`); :class:`ExitHandler` performs them on the slot and records them::

    crash_loops = CrashLoopTracker(spec.restart, journal, metrics, clock)
    exits = ExitHandler(settings, spec.restart, journal, metrics, enforcer, limits, ...)
    exits.handle(slot, returncode, stopping=False, desired={"r1": 2})
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from falcon_platform.clock import Clock
from falcon_platform.config import memory
from falcon_platform.config.settings import Settings
from falcon_platform.config.spec import RestartSpec
from falcon_platform.events.journal import EventJournal, EventKind
from falcon_platform.supervisor import restarts
from falcon_platform.supervisor.enforcers import MemoryEnforcer
from falcon_platform.supervisor.fleet_metrics import SupervisorMetrics
from falcon_platform.supervisor.lifecycle import WorkerEvent
from falcon_platform.supervisor.observers import WorkerObservers
from falcon_platform.supervisor.slots import Slot

log = logging.getLogger("falcon.supervisor")


def classify_slot_exit(
    slot: Slot,
    returncode: int,
    *,
    stopping: bool,
    cgroup_oom: bool,
    enforcer_peak_bytes: int | None,
) -> restarts.ExitInfo:
    """The exit record of ``slot``'s process from what the supervisor knows about it.

    OOM when the kernel (cgroup) or the supervisor's watchdog killed it; the peak is the
    larger of the supervisor's RSS samples and the cgroup's own peak (0 or None: unknown).
    """
    peaks = [p for p in (slot.peak_rss_bytes, enforcer_peak_bytes) if p]
    return restarts.classify_exit(
        returncode,
        oom_killed=cgroup_oom or slot.watchdog_killed,
        was_ready=slot.ready_mono is not None,
        expected=slot.retiring or stopping,
        liveness_killed=slot.liveness_killed,
        recycled=slot.recycling,
        peak_rss_bytes=max(peaks) if peaks else None,
    )


def leaves_pool(slot: Slot, *, stopping: bool) -> bool:
    """The slot is retired after this exit instead of restarted: it was asked to go, the
    supervisor is stopping, or it is a surge worker that never became ready (the rolling
    restart stops rather than retrying a release that does not boot)."""
    return slot.retiring or stopping or (slot.surge and slot.ready_mono is None)


def may_leave_orphans(slot: Slot, returncode: int) -> bool:
    """A worker that died before serving or exited non-zero may have left request-log
    segments it did not ship (a clean drain ships its own)."""
    return slot.ready_mono is None or returncode != 0


def exit_details(
    slot: Slot,
    info: restarts.ExitInfo,
    *,
    cgroup_oom: bool,
    enforcer_kind: str,
    limit_bytes: int | None,
    now_mono: float,
) -> dict[str, Any]:
    """The ``worker_exited`` journal entry's details."""
    healthy_for = now_mono - slot.ready_mono if slot.ready_mono is not None else 0.0
    oom = cgroup_oom or slot.watchdog_killed
    details: dict[str, Any] = {
        "pid": slot.proc.pid if slot.proc is not None else None,
        "exit_code": info.exit_code,
        "signal": info.signal,
        "reason": info.reason.value,
        "oom_killed": info.oom_killed,
        "oom_enforcement": (enforcer_kind if cgroup_oom else "watchdog") if oom else None,
        "peak_rss_bytes": info.peak_rss_bytes,
        "peak_pss_bytes": slot.peak_pss_bytes or None,
        "memory_limit_bytes": limit_bytes,
        "during_boot": info.during_boot,
        "uptime_s": round(now_mono - (slot.started_mono or now_mono), 3),
        "healthy_for_s": round(healthy_for, 3),
    }
    if slot.boot_message:
        details["boot_message"] = slot.boot_message
    if slot.watchdog_killed:
        details["watchdog_killed_at"] = slot.extra.get("watchdog_kill_wall")
        details["watchdog_rss_bytes"] = slot.extra.get("watchdog_kill_rss")
        details["watchdog_pss_bytes"] = slot.extra.get("watchdog_kill_pss")
    return details


class CrashLoopTracker:
    """Restart times per release and whether each release is in CrashLoopBackOff."""

    def __init__(
        self, spec: RestartSpec, journal: EventJournal, metrics: SupervisorMetrics, clock: Clock
    ) -> None:
        self.spec = spec
        self.journal = journal
        self.metrics = metrics
        self.clock = clock
        self.looping: dict[str, bool] = {}  # the same dict for the supervisor's whole life
        self._restart_times: dict[str, deque[float]] = {}

    def note_restart(self, release: str, desired: Iterable[str]) -> None:
        self._restart_times.setdefault(release, deque(maxlen=1000)).append(self.clock.monotonic())
        self.update(desired)

    def update(self, desired: Mapping[str, int] | Iterable[str]) -> None:
        """Enter or leave CrashLoopBackOff per release (journaled) and set the gauge.

        A release retired on purpose (no worker desired any more: a rollback, the end of a
        rolling restart) leaves CrashLoopBackOff at once, whatever its restart history: the
        critical alert must resolve with the rollback, not 10 minutes later.
        """
        now = self.clock.monotonic()
        wanted = desired if isinstance(desired, Mapping) else dict.fromkeys(desired, 1)
        for release in set(wanted) | set(self._restart_times):
            times = self._restart_times.get(release, deque())
            retired = restarts.release_retired(wanted, release)
            looping = not retired and restarts.crash_looping(list(times), now, self.spec)
            was = self.looping.get(release, False)
            if looping != was:
                self.looping[release] = looping
                kind = EventKind.CRASH_LOOP_ENTERED if looping else EventKind.CRASH_LOOP_LEFT
                details: dict[str, Any] = {
                    "restarts_in_window": restarts.recent_restarts(list(times), now, self.spec),
                    "window_s": self.spec.crash_loop_window,
                    "threshold": self.spec.crash_loop_restarts,
                }
                if retired:
                    details["reason"] = "release retired"
                self.journal.record(kind, release=release, details=details)
            if retired:
                self._restart_times.pop(release, None)  # its history ends with it
            self.metrics.crash_loop.labels(release=release).set(1 if looping else 0)


class ExitHandler:
    """Performs what happens to a slot whose process exited (reaped by the supervisor)."""

    def __init__(
        self,
        settings: Settings,
        spec: RestartSpec,
        journal: EventJournal,
        metrics: SupervisorMetrics,
        enforcer: MemoryEnforcer,
        limits: memory.MemoryLimits,
        observers: WorkerObservers,
        crash_loops: CrashLoopTracker,
        clock: Clock,
        rng: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.spec = spec
        self.journal = journal
        self.metrics = metrics
        self.enforcer = enforcer
        self.limits = limits
        self.observers = observers
        self.crash_loops = crash_loops
        self.clock = clock
        self._rng = rng

    def handle(
        self, slot: Slot, returncode: int, *, stopping: bool, desired: Iterable[str]
    ) -> None:
        """Record the exit of ``slot``'s process and move the slot on (its notify pipe is closed)."""
        now_wall, now_mono = self.clock.now(), self.clock.monotonic()
        cgroup_oom = False
        with contextlib.suppress(OSError):
            cgroup_oom = self.enforcer.oom_killed(slot.slot_id)
        info = classify_slot_exit(
            slot,
            returncode,
            stopping=stopping,
            cgroup_oom=cgroup_oom,
            enforcer_peak_bytes=self.enforcer.peak_bytes(slot.slot_id),
        )
        self.enforcer.release(slot.slot_id)
        slot.move(WorkerEvent.EXIT)
        slot.last_exit = info
        slot.last_exit_wall = now_wall
        healthy_for = now_mono - slot.ready_mono if slot.ready_mono is not None else 0.0
        details = exit_details(
            slot,
            info,
            cgroup_oom=cgroup_oom,
            enforcer_kind=self.enforcer.kind,
            limit_bytes=self.limits.limit_bytes,
            now_mono=now_mono,
        )
        self.journal.record(
            EventKind.WORKER_EXITED, release=slot.release, worker=slot.slot_id, details=details
        )
        labels = {"worker": slot.slot_id, "release": slot.release}
        if info.oom_killed:
            self.metrics.oom_kills.labels(**labels).inc()
        self.observers.forget(slot.slot_id)
        if may_leave_orphans(slot, returncode):
            asyncio.get_running_loop().create_task(self._ship_orphans(slot))
        decision = restarts.decide_after_exit(
            info,
            retiring=leaves_pool(slot, stopping=stopping),
            recycling=slot.recycling,
            previous_attempt=slot.attempt,
            boot_failures=slot.boot_failures,
            healthy_for_s=healthy_for,
            spec=self.spec,
            u=self._rng(),
        )
        slot.attempt, slot.boot_failures = decision.attempt, decision.boot_failures
        if decision.action is restarts.AfterExit.RETIRE:
            slot.move(WorkerEvent.RETIRE)
            return
        if decision.action is restarts.AfterExit.REPLACE:
            # Soft limit: replace at once; a planned recycle is not a crash and adds no back-off.
            slot.move(WorkerEvent.SCHEDULE_RESTART)
            slot.restart_at = now_mono
            slot.backoff_s = 0.0
            slot.recycles += 1
            return
        if decision.action is restarts.AfterExit.GIVE_UP:
            self._give_up(slot, info)
            return
        delay = decision.delay_s
        slot.move(WorkerEvent.SCHEDULE_RESTART)
        slot.restart_at = now_mono + delay
        slot.backoff_s = delay
        slot.restarts += 1
        self.metrics.restarts.labels(**labels).inc()
        self.crash_loops.note_restart(slot.release, desired)
        self.journal.record(
            EventKind.RESTART_SCHEDULED,
            release=slot.release,
            worker=slot.slot_id,
            details={
                "backoff_s": round(delay, 3),
                "attempt": slot.attempt,
                "restarts": slot.restarts,
                "after": info.reason.value,
                "boot_failures": slot.boot_failures,
            },
        )

    def _give_up(self, slot: Slot, info: restarts.ExitInfo) -> None:
        slot.move(WorkerEvent.GIVE_UP)
        why = slot.boot_message or f"exit code {info.exit_code}"
        self.journal.record(
            EventKind.WORKER_GAVE_UP,
            release=slot.release,
            worker=slot.slot_id,
            details={
                "boot_failures": slot.boot_failures,
                "reason": why,
                "hint": "fix the cause, then `falcon restart`",
            },
        )
        log.error(
            "worker %s failed to boot %d times, not retrying: %s",
            slot.slot_id,
            slot.boot_failures,
            why,
        )

    async def _ship_orphans(self, slot: Slot) -> None:
        """Ship request-log segments a dead worker left on disk (so a SIGKILL loses no row)."""
        from falcon_platform.stores.request_log import ship_orphans

        try:
            report = await asyncio.to_thread(
                ship_orphans, self.settings, slot.slot_id, timeout_s=self.settings.shutdown_grace_s
            )
        except Exception as exc:  # the next exit or the worker's own restart ships them
            log.warning("shipping %s's request-log segments failed: %s", slot.slot_id, exc)
            return
        if report.rows_shipped or report.segments_left:
            self.journal.record(
                EventKind.ORPHANS_SHIPPED,
                release=slot.release,
                worker=slot.slot_id,
                details={"rows": report.rows_shipped, "segments_left": report.segments_left},
            )
