"""Rolling restarts: replace every worker one by one (start a surge worker, wait ready, retire
the old one), optionally into a new release with changed ``FALCON_*`` settings.

The decision of what a restart covers is pure (:func:`plan_rolling_restart`); the supervisor
applies it and calls :func:`advance_rolling` once per loop with the effects it owns::

    rolling, release, current = plan_rolling_restart(None, env={"FALCON_X": "1"}, ...)
    advance_rolling(rolling, slots, desired, retire=..., start_replacement=..., ...)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from falcon_platform.clock import Clock
from falcon_platform.errors import RuntimeStateError
from falcon_platform.events.journal import EventJournal, EventKind
from falcon_platform.supervisor.lifecycle import WorkerState
from falcon_platform.supervisor.plan import counts
from falcon_platform.supervisor.slots import Release, Slot, next_release_id


@dataclass
class RollingRestart:
    to_release: str
    pending: list[str]
    started_wall: float
    current_old: str | None = None
    current_new: str | None = None
    replaced: int = 0
    failed: str | None = None
    finished_wall: float | None = None
    # Why the replacement exited, noted when its slot is dropped (the slot may be gone before
    # the next advance_rolling looks at it).
    replacement_exit: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "to_release": self.to_release,
            "pending": list(self.pending),
            "replacing": self.current_old,
            "replacement": self.current_new,
            "replaced": self.replaced,
            "failed": self.failed,
            "started_at": self.started_wall,
            "finished_at": self.finished_wall,
            "done": self.finished_wall is not None,
        }


def why_worker_failed(slot: Slot) -> str:
    """What a worker that did not become ready said (its boot message) or how it exited."""
    if slot.boot_message:
        return slot.boot_message
    info = slot.last_exit
    if info is not None:
        return f"the replacement worker exited during boot: {info.reason.value} (exit code {info.exit_code})"
    return "the replacement worker did not become ready"


def note_dropped_slot(rolling: RollingRestart | None, slot: Slot) -> None:
    """Keep why the rolling restart's replacement exited before its slot is forgotten."""
    if (
        rolling is not None
        and rolling.finished_wall is None
        and rolling.current_new == slot.slot_id
    ):
        rolling.replacement_exit = why_worker_failed(slot)


def rolling_to(rolling: RollingRestart | None) -> str | None:
    """The release a rolling restart in progress moves workers to; None when none is."""
    if rolling is not None and rolling.finished_wall is None:
        return rolling.to_release
    return None


def plan_rolling_restart(
    rolling: RollingRestart | None,
    *,
    stopping: bool,
    desired: Mapping[str, int],
    releases: Mapping[str, Release],
    default_release: str,
    env: Mapping[str, str] | None,
    slots: Iterable[Slot],
    now: float,
    taken: Iterable[str] = (),
) -> tuple[RollingRestart, Release | None, str]:
    """(the restart, the new release it rolls to or None, the release it rolls from).
    A new release is numbered after ``releases`` and ``taken`` (ids the release store holds).

    Raises :class:`RuntimeStateError` when one is already in progress, the supervisor is
    stopping, or ``env`` holds anything but ``FALCON_*`` variables.
    """
    if rolling is not None and rolling.finished_wall is None:
        raise RuntimeStateError("a rolling restart is already in progress; see `falcon status`")
    if stopping:
        raise RuntimeStateError("the supervisor is stopping")
    current = max(desired, key=lambda r: desired[r]) if desired else default_release
    target = current
    release: Release | None = None
    if env:
        bad = [k for k in env if not k.startswith("FALCON_")]
        if bad:
            raise RuntimeStateError(f"only FALCON_* variables can change in a release, not {bad}")
        merged = {**releases[current].env, **env}
        target = next_release_id([*releases, *taken])
        release = Release(target, merged, now)
    old = [s.slot_id for s in sorted(slots, key=lambda s: s.index) if counts(s.view())]
    return RollingRestart(target, old, now), release, current


def advance_rolling(
    rolling: RollingRestart | None,
    slots: Mapping[str, Slot],
    desired: MutableMapping[str, int],
    *,
    retire: Callable[[Slot], None],
    start_replacement: Callable[[str], Slot],
    journal: EventJournal,
    clock: Clock,
) -> None:
    """One step: promote a ready replacement (retiring the worker it replaces), fail the restart
    if the replacement died, or start the next surge worker (``start_replacement(release)``)."""
    if rolling is None or rolling.finished_wall is not None:
        return
    if rolling.current_new is not None:
        new = slots.get(rolling.current_new)
        old = slots.get(rolling.current_old or "")
        if new is not None and new.state is WorkerState.READY:
            new.surge = False
            if old is not None:
                if old.release != new.release:
                    desired[old.release] = max(0, desired.get(old.release, 0) - 1)
                    desired[new.release] = desired.get(new.release, 0) + 1
                retire(old)
            rolling.replaced += 1
            rolling.current_old = rolling.current_new = None
        elif new is None or new.state not in (WorkerState.STARTING, WorkerState.NEW):
            why = (
                why_worker_failed(new)
                if new is not None
                else rolling.replacement_exit or "the replacement worker did not become ready"
            )
            if new is not None:
                retire(new)
            rolling.failed = why
            rolling.finished_wall = clock.now()
            journal.record(
                EventKind.ROLLING_RESTART_FINISHED,
                release=rolling.to_release,
                details={**rolling.to_dict(), "ok": False},
            )
            return
        else:
            return
    while rolling.pending:
        old_id = rolling.pending.pop(0)
        old = slots.get(old_id)
        if old is None or not counts(old.view()):
            continue
        new = start_replacement(rolling.to_release)
        rolling.current_old, rolling.current_new = old_id, new.slot_id
        return
    rolling.finished_wall = clock.now()
    journal.record(
        EventKind.ROLLING_RESTART_FINISHED,
        release=rolling.to_release,
        details={**rolling.to_dict(), "ok": True},
    )
