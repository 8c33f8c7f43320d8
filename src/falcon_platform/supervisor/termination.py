"""Ending worker processes: signalling, draining, liveness kills, and which workers to kill.

:func:`find_unhealthy` is the pure verdict over the slots (startup timeout, failed liveness
probes, a drain or kill past its deadline); :func:`kill_unhealthy` performs it.

Liveness kills take at most one worker of a release at a time: while one is being killed or
restarted after a liveness kill, the others of its pool are left alone however sick they look.
Workers that fail together usually fail for one cause (a connection flood exhausting their
descriptors, a slow dependency): killing all of them turns a degradation into an outage, and
one replacement at a time still cures a real hang::

    find_unhealthy(slots, spec.probes, now)   # [LivenessKill(w2, "liveness probe failed"), ...]
    kill_unhealthy(slots, spec.probes, now, clock=clock, metrics=metrics, journal=journal)
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from falcon_platform.clock import Clock
from falcon_platform.config.spec import ProbeSpec
from falcon_platform.events.journal import EventJournal, EventKind
from falcon_platform.supervisor.fleet_metrics import SupervisorMetrics
from falcon_platform.supervisor.lifecycle import WorkerEvent, WorkerState
from falcon_platform.supervisor.restarts import ExitReason
from falcon_platform.supervisor.slots import Slot

log = logging.getLogger("falcon.supervisor")


@dataclass(frozen=True)
class LivenessKill:
    """SIGTERM a worker that did not start in time or stopped answering (SIGKILL at the grace)."""

    slot: Slot
    why: str
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Escalate:
    """SIGKILL a draining or killed worker that did not exit within its grace."""

    slot: Slot


Verdict = LivenessKill | Escalate


def signal_worker(slot: Slot, sig: int) -> None:
    """Send ``sig`` to the slot's process if it has one that has not been reaped."""
    if slot.proc is not None and slot.proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(slot.proc.pid, sig)


def drain(slot: Slot, *, deadline: float, retiring: bool = False, recycling: bool = False) -> None:
    """SIGTERM: stop accepting, finish in-flight requests; SIGKILL once ``deadline`` passes."""
    if slot.state in (WorkerState.DRAINING, WorkerState.KILLING):
        return
    slot.retiring = slot.retiring or retiring
    slot.recycling = slot.recycling or recycling
    slot.move(WorkerEvent.DRAIN)
    slot.deadline = deadline
    signal_worker(slot, signal.SIGTERM)


def liveness_kill_in_flight(slot: Slot) -> bool:
    """The slot was liveness-killed and is not serving again yet (killing, backing off, booting)."""
    if slot.state is WorkerState.KILLING and slot.liveness_killed:
        return True
    last = slot.last_exit
    return (
        last is not None
        and last.reason is ExitReason.LIVENESS_KILLED
        and slot.state in (WorkerState.EXITED, WorkerState.BACKOFF, WorkerState.STARTING)
    )


def find_unhealthy(slots: Iterable[Slot], probes: ProbeSpec, now: float) -> list[Verdict]:
    """Which workers to kill at monotonic time ``now``, and why (at most one verdict a slot;
    at most one liveness kill per release in flight)."""
    slots = list(slots)
    verdicts: list[Verdict] = []
    failing: dict[str, list[Slot]] = {}
    for slot in slots:
        if slot.state is WorkerState.STARTING and slot.started_mono is not None:
            if now - slot.started_mono > probes.startup_timeout:
                verdicts.append(
                    LivenessKill(
                        slot, "startup timeout", {"startup_timeout_s": probes.startup_timeout}
                    )
                )
        elif slot.state is WorkerState.READY and slot.liveness_failures >= probes.failure_threshold:
            failing.setdefault(slot.release, []).append(slot)
        elif (
            slot.state in (WorkerState.DRAINING, WorkerState.KILLING)
            and slot.deadline is not None
            and now >= slot.deadline
            and slot.proc is not None
            and slot.proc.returncode is None
            and not slot.extra.get("sigkilled")
        ):
            verdicts.append(Escalate(slot))
    for release, sick in sorted(failing.items()):
        busy = any(liveness_kill_in_flight(s) for s in slots if s.release == release)
        if busy:
            continue
        victim = max(sick, key=lambda s: (s.liveness_failures, -(s.ready_mono or 0.0), -s.index))
        verdicts.append(
            LivenessKill(
                victim,
                "liveness probe failed",
                {
                    "failures": victim.liveness_failures,
                    "period_s": probes.period,
                    "timeout_s": probes.timeout,
                    "failing_in_pool": sorted(s.slot_id for s in sick),
                },
            )
        )
    return verdicts


def deferred_liveness_kills(
    slots: Iterable[Slot], verdicts: Iterable[Verdict], probes: ProbeSpec
) -> list[Slot]:
    """Ready workers failing their probes that are not killed now (one of their pool is)."""
    chosen = {v.slot.slot_id for v in verdicts}
    return [
        s
        for s in slots
        if s.state is WorkerState.READY
        and s.liveness_failures >= probes.failure_threshold
        and s.slot_id not in chosen
    ]


def liveness_kill(
    slot: Slot,
    *,
    why: str,
    details: Mapping[str, Any],
    kill_grace: float,
    clock: Clock,
    metrics: SupervisorMetrics,
    journal: EventJournal,
) -> None:
    if slot.state is WorkerState.KILLING:
        return
    slot.move(WorkerEvent.KILL)
    slot.liveness_killed = True
    slot.deadline = clock.monotonic() + kill_grace
    # A hung (or SIGSTOPped) worker cannot act on SIGTERM: the deadline escalates to SIGKILL.
    signal_worker(slot, signal.SIGTERM)
    metrics.liveness_kills.labels(worker=slot.slot_id, release=slot.release).inc()
    journal.record(
        EventKind.LIVENESS_KILL,
        release=slot.release,
        worker=slot.slot_id,
        details={"pid": slot.pid, "why": why, "kill_grace_s": kill_grace, **details},
    )


def kill_unhealthy(
    slots: Iterable[Slot],
    probes: ProbeSpec,
    now: float,
    *,
    clock: Clock,
    metrics: SupervisorMetrics,
    journal: EventJournal,
) -> None:
    """Perform :func:`find_unhealthy`'s verdicts."""
    slots = list(slots)
    verdicts = find_unhealthy(slots, probes, now)
    for slot in deferred_liveness_kills(slots, verdicts, probes):
        if not slot.extra.get("kill_deferred"):
            slot.extra["kill_deferred"] = True  # said once per process, not every tick
            log.warning(
                "%s fails its liveness probe but another worker of release %s is being "
                "replaced after a liveness kill; it is left alone until that one is ready",
                slot.slot_id,
                slot.release,
            )
            journal.record(
                EventKind.LIVENESS_KILL_DEFERRED,
                release=slot.release,
                worker=slot.slot_id,
                details={"pid": slot.pid, "failures": slot.liveness_failures},
            )
    for verdict in verdicts:
        slot = verdict.slot
        if isinstance(verdict, LivenessKill):
            liveness_kill(
                slot,
                why=verdict.why,
                details=verdict.details,
                kill_grace=probes.kill_grace,
                clock=clock,
                metrics=metrics,
                journal=journal,
            )
        else:
            slot.extra["sigkilled"] = True
            log.warning("%s did not exit within its grace: SIGKILL", slot.slot_id)
            signal_worker(slot, signal.SIGKILL)
