"""The supervisor's memory watchdog pass: sample each worker's memory and act on
``memory.memory_action`` (recycle at the soft limit; SIGKILL at the hard limit when the
kernel does not enforce it, at once, because there reaction time is the point).

The limits apply to PSS (what the worker owns, its share of the zygote's pages included).
RSS is read every pass (cheap: ``statm``); PSS (a page-table walk, milliseconds for a
100 MB worker) only when RSS reaches a limit, since PSS <= RSS, and every
``OWNED_REPORT_INTERVAL_S`` for ``falcon status`` and the metrics::

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
from falcon_platform.supervisor.enforcers import (
    MemoryEnforcer,
    OwnedMemory,
    owned_memory,
    rss_bytes,
)
from falcon_platform.supervisor.fleet_metrics import SupervisorMetrics
from falcon_platform.supervisor.lifecycle import WorkerState
from falcon_platform.supervisor.slots import Slot
from falcon_platform.supervisor.termination import signal_worker

OWNED_REPORT_INTERVAL_S = 2.0  # PSS/USS for status and metrics while below every limit


class MemoryWatchdog:
    def __init__(
        self,
        limits: memory.MemoryLimits,
        enforcer: MemoryEnforcer,
        *,
        clock: Clock,
        metrics: SupervisorMetrics,
        journal: EventJournal,
        read_rss: Callable[[int], int | None] = rss_bytes,
        read_owned: Callable[[int], OwnedMemory | None] = owned_memory,
    ) -> None:
        self.read_rss = read_rss
        self.read_owned = read_owned
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
            rss = self.read_rss(slot.proc.pid)
            if rss is None:
                continue
            slot.rss_bytes = rss
            slot.peak_rss_bytes = max(slot.peak_rss_bytes, rss)
            now = self.clock.monotonic()
            owned = None
            if (
                memory.needs_owned_sample(rss, self.limits)
                or now - slot.owned_sampled_mono >= OWNED_REPORT_INTERVAL_S
            ):
                owned = self.read_owned(slot.proc.pid)
                if owned is not None:
                    slot.pss_bytes, slot.uss_bytes = owned.pss_bytes, owned.uss_bytes
                    slot.peak_pss_bytes = max(slot.peak_pss_bytes, owned.pss_bytes)
                    slot.owned_sampled_mono = now
            # PSS when read this pass (always, once RSS reaches a limit); else RSS, which is
            # then below every limit (or PSS could not be read: the stricter number).
            charged = owned.pss_bytes if owned is not None else rss
            action = memory.memory_action(
                charged,
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
                slot.extra["watchdog_kill_pss"] = owned.pss_bytes if owned is not None else None
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
                        "pss_bytes": slot.pss_bytes,
                        "uss_bytes": slot.uss_bytes,
                        "soft_limit_bytes": self.limits.soft_bytes,
                        "memory_limit_bytes": self.limits.limit_bytes,
                    },
                )
                recycle(slot)
                acted = True
        return acted
