"""Launching a worker into a slot and hearing it boot on its notify pipe (``ready`` or
``boot_failed <why>``). ``Spawner`` starts the process; this module does the slot's bookkeeping,
the memory cgroup, the journal, and the pipe::

    launcher = WorkerLauncher(journal=journal, metrics=metrics, enforcer=enforcer,
                              limits=limits, clock=clock, on_ready=wake.set)
    launcher.launch(slot, spawner)   # NEW/BACKOFF/FAILED -> STARTING; READY when it says so
    launcher.finish(slot)            # after the process exited: read a last line, close the pipe
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from typing import Any

from falcon_platform.clock import Clock
from falcon_platform.config.memory import MemoryLimits
from falcon_platform.events.journal import EventJournal, EventKind
from falcon_platform.supervisor.enforcers import MemoryEnforcer
from falcon_platform.supervisor.fleet_metrics import SupervisorMetrics
from falcon_platform.supervisor.lifecycle import WorkerEvent, WorkerState
from falcon_platform.supervisor.slots import Slot
from falcon_platform.supervisor.spawner import Spawner

log = logging.getLogger("falcon.supervisor")


class WorkerLauncher:
    def __init__(
        self,
        *,
        journal: EventJournal,
        metrics: SupervisorMetrics,
        enforcer: MemoryEnforcer,
        limits: MemoryLimits,
        clock: Clock,
        on_ready: Callable[[], None],
    ) -> None:
        self.journal = journal
        self.metrics = metrics
        self.enforcer = enforcer
        self.limits = limits
        self.clock = clock
        self._on_ready_hook = on_ready

    def launch(self, slot: Slot, spawner: Spawner) -> None:
        """Start the slot's process (raises ``OSError`` when fork/exec or a pipe fails)."""
        started = spawner.spawn(slot.release, slot.slot_id, slot.admin_socket)
        proc, read_fd, from_standby = started.proc, started.notify_fd, started.from_standby
        slot.reset_process_flags()
        slot.proc = proc
        slot.notify_fd = read_fd
        slot.notify_buffer = b""
        slot.started_wall = self.clock.now()
        slot.started_mono = self.clock.monotonic()
        slot.restart_at = None
        slot.move(WorkerEvent.SPAWN)
        slot.extra["forked"] = from_standby
        # Export the counters at 0 from the start: increase() (alert FalconWorkerOOMKilled, in
        # Prometheus and in the local evaluator) cannot see a series whose first sample is 1.
        for counter in (
            self.metrics.oom_kills,
            self.metrics.restarts,
            self.metrics.limit_recycles,
            self.metrics.liveness_kills,
        ):
            counter.labels(worker=slot.slot_id, release=slot.release)
        try:
            self.enforcer.attach(slot.slot_id, proc.pid, self.limits.limit_bytes)
        except OSError as exc:
            log.warning("could not put %s in its memory cgroup: %s", slot.slot_id, exc)
        asyncio.get_running_loop().add_reader(read_fd, self.read_notify, slot)
        self.journal.record(
            EventKind.WORKER_STARTED,
            release=slot.release,
            worker=slot.slot_id,
            details={
                "pid": proc.pid,
                "restarts": slot.restarts,
                "memory_limit_bytes": self.limits.limit_bytes,
                "memory_enforcement": self.enforcer.kind,
                "surge": slot.surge,
                "from_zygote": from_standby,
                "zygote_warm": started.standby_warm,
            },
        )

    def read_notify(self, slot: Slot) -> None:
        """Read what the worker said: ``ready`` moves the slot to READY."""
        if slot.notify_fd is None:
            return
        try:
            chunk = os.read(slot.notify_fd, 4096)
        except OSError:
            chunk = b""
        if not chunk:
            self.close_notify(slot)
            return
        slot.notify_buffer += chunk
        *lines, slot.notify_buffer = slot.notify_buffer.split(b"\n")
        for raw in lines:
            message = raw.decode(errors="replace").strip()
            if message == "ready":
                self._on_ready(slot)
            elif message.startswith("boot_failed"):
                slot.boot_message = message.removeprefix("boot_failed").strip()

    def close_notify(self, slot: Slot) -> None:
        if slot.notify_fd is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(slot.notify_fd)
            with contextlib.suppress(OSError):
                os.close(slot.notify_fd)
            slot.notify_fd = None

    def finish(self, slot: Slot) -> None:
        """The process exited: a last ``boot_failed <why>`` may be waiting; then close the pipe."""
        if slot.notify_fd is not None:
            self.read_notify(slot)
            self.close_notify(slot)

    def _on_ready(self, slot: Slot) -> None:
        if slot.state is not WorkerState.STARTING:
            return
        slot.move(WorkerEvent.READY)
        slot.ready_wall = self.clock.now()
        slot.ready_mono = self.clock.monotonic()
        slot.boot_failures = 0
        boot_s = slot.ready_mono - (slot.started_mono or slot.ready_mono)
        details: dict[str, Any] = {"pid": slot.pid, "boot_s": round(boot_s, 3)}
        if slot.last_exit is not None and slot.last_exit_wall is not None and not slot.surge:
            details["since_exit_s"] = round(slot.ready_wall - slot.last_exit_wall, 3)
            details["backoff_s"] = round(slot.backoff_s or 0.0, 3)
            details["restart_latency_s"] = round(
                slot.ready_wall - slot.last_exit_wall - (slot.backoff_s or 0.0), 3
            )
        self.journal.record(
            EventKind.WORKER_READY, release=slot.release, worker=slot.slot_id, details=details
        )
        self._on_ready_hook()
