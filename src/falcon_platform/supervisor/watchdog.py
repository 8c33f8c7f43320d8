"""The supervisor's memory watchdog pass: sample each worker's RSS and act on
``memory.memory_action`` (recycle at the soft limit; SIGKILL at the hard limit when the
kernel does not enforce it, at once, because there reaction time is the point)::

    watchdog = MemoryWatchdog(limits, enforcer, clock=clock, metrics=metrics, journal=journal)
    if watchdog.check(slots.values(), recycle=lambda s: drain(s, recycling=True)):
        wake_the_loop()
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterable

from falcon_platform.clock import Clock
from falcon_platform.config import memory
from falcon_platform.events.journal import EventJournal, EventKind
from falcon_platform.supervisor.enforcers import MemoryEnforcer, rss_bytes
from falcon_platform.supervisor.fleet_metrics import SupervisorMetrics
from falcon_platform.supervisor.lifecycle import WorkerState
from falcon_platform.supervisor.slots import Slot
from falcon_platform.supervisor.termination import signal_worker


class MemoryWatchdog:
    def __init__(
        self,
        limits: memory.MemoryLimits,
        enforcer: MemoryEnforcer,
        *,
        clock: Clock,
        metrics: SupervisorMetrics,
        journal: EventJournal,
    ) -> None:
        self.limits = limits
        self.enforcer = enforcer
        self.clock = clock
        self.metrics = metrics
        self.journal = journal

    def check(self, slots: Iterable[Slot], *, recycle: Callable[[Slot], None]) -> bool:
        """One pass over the live workers; True when it killed or recycled one."""
        acted = False
        for slot in list(slots):
            if not slot.live or slot.proc is None:
                continue
            rss = rss_bytes(slot.proc.pid)
            if rss is None:
                continue
            slot.rss_bytes = rss
            slot.peak_rss_bytes = max(slot.peak_rss_bytes, rss)
            action = memory.memory_action(
                rss,
                self.limits,
                # A zygote-forked worker shares the model's pages, which the kernel charges to
                # the zygote: its cgroup sees less than its RSS, so the watchdog holds the line.
                kernel_enforced=self.enforcer.kernel_enforced and not slot.extra.get("forked"),
                already_recycling=slot.recycling
                or slot.state in (WorkerState.DRAINING, WorkerState.KILLING),
            )
            if action is memory.MemoryAction.KILL and not slot.watchdog_killed:
                slot.watchdog_killed = True
                signal_worker(slot, signal.SIGKILL)  # at once: the limit is the limit
                slot.extra["watchdog_kill_wall"] = self.clock.now()
                slot.extra["watchdog_kill_rss"] = rss
                acted = True
            elif action is memory.MemoryAction.RECYCLE and slot.state is WorkerState.READY:
                self.metrics.limit_recycles.labels(worker=slot.slot_id, release=slot.release).inc()
                self.journal.record(
                    EventKind.LIMIT_RECYCLE,
                    release=slot.release,
                    worker=slot.slot_id,
                    details={
                        "pid": slot.pid,
                        "rss_bytes": rss,
                        "soft_limit_bytes": self.limits.soft_bytes,
                        "memory_limit_bytes": self.limits.limit_bytes,
                    },
                )
                recycle(slot)
                acted = True
        return acted
