"""A worker slot's lifecycle as a transition table and a pure :func:`apply`.

A *slot* is one place in the pool (``w3`` of release ``r1``); the processes that
fill it come and go. The supervisor feeds events in and performs the effects::

    state = apply(WorkerState.NEW, WorkerEvent.SPAWN)        # -> STARTING
    state = apply(state, WorkerEvent.READY)                   # -> READY
    apply(WorkerState.STOPPED, WorkerEvent.READY)             # raises RuntimeStateError
"""

from __future__ import annotations

from enum import StrEnum

from falcon_platform.errors import RuntimeStateError


class WorkerState(StrEnum):
    NEW = "new"  # slot exists, no process yet
    STARTING = "starting"  # process spawned; loading model, warming up; not accepting
    READY = "ready"  # accepting on the public socket
    DRAINING = "draining"  # SIGTERM sent: stopped accepting, finishing in-flight requests
    KILLING = "killing"  # hung or over its limit: SIGTERM then SIGKILL after the grace
    EXITED = "exited"  # process gone, reaped; decision pending
    BACKOFF = "backoff"  # waiting for the restart delay (CrashLoopBackOff when repeated)
    FAILED = "failed"  # boot failed too many times: not retried
    STOPPED = "stopped"  # retired on purpose (scale down, rolling restart, shutdown)


class WorkerEvent(StrEnum):
    SPAWN = "spawn"
    READY = "ready"
    DRAIN = "drain"
    KILL = "kill"
    EXIT = "exit"
    SCHEDULE_RESTART = "schedule_restart"
    GIVE_UP = "give_up"
    RETIRE = "retire"


S, E = WorkerState, WorkerEvent

TRANSITIONS: dict[tuple[WorkerState, WorkerEvent], WorkerState] = {
    (S.NEW, E.SPAWN): S.STARTING,
    (S.NEW, E.RETIRE): S.STOPPED,
    (S.STARTING, E.READY): S.READY,
    (S.STARTING, E.DRAIN): S.DRAINING,
    (S.STARTING, E.KILL): S.KILLING,
    (S.STARTING, E.EXIT): S.EXITED,
    (S.READY, E.DRAIN): S.DRAINING,
    (S.READY, E.KILL): S.KILLING,
    (S.READY, E.EXIT): S.EXITED,
    (S.DRAINING, E.KILL): S.KILLING,
    (S.DRAINING, E.EXIT): S.EXITED,
    (S.KILLING, E.EXIT): S.EXITED,
    (S.EXITED, E.SCHEDULE_RESTART): S.BACKOFF,
    (S.EXITED, E.GIVE_UP): S.FAILED,
    (S.EXITED, E.RETIRE): S.STOPPED,
    (S.BACKOFF, E.SPAWN): S.STARTING,
    (S.BACKOFF, E.RETIRE): S.STOPPED,
    (S.FAILED, E.SPAWN): S.STARTING,  # an operator's `falcon restart` tries again
    (S.FAILED, E.RETIRE): S.STOPPED,
}

#: States in which a process is alive (has a pid the supervisor must reap).
LIVE_STATES = frozenset({S.STARTING, S.READY, S.DRAINING, S.KILLING})


def apply(state: WorkerState, event: WorkerEvent) -> WorkerState:
    """The state after ``event``; raises :class:`RuntimeStateError` on a move the table lacks."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise RuntimeStateError(
            f"invalid worker transition: {event.value!r} in state {state.value!r}"
        ) from None
