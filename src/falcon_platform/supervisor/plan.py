"""Reconcile desired (workers per release) against observed slots: a pure ``plan``.

Desired state is a mapping ``{release: count}`` so a stable and a canary release can
run side by side on the same socket. ``plan`` returns the actions; the supervisor
performs them (gunicorn's arbiter, with the decisions out of the loop)::

    plan({"r1": 2}, [SlotView("w1", "r1", WorkerState.READY)], now=100.0)
    # -> [NewSlot(release="r1")]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from falcon_platform.supervisor.lifecycle import LIVE_STATES, WorkerState


@dataclass(frozen=True, slots=True)
class SlotView:
    slot_id: str
    release: str
    state: WorkerState
    restart_at: float | None = None  # when a BACKOFF slot may spawn again
    retiring: bool = False  # being drained on purpose; does not count
    surge: bool = False  # extra slot of a rolling restart; does not count yet
    index: int = 0  # creation order; the newest are retired first


@dataclass(frozen=True, slots=True)
class NewSlot:
    release: str


@dataclass(frozen=True, slots=True)
class Spawn:
    slot_id: str


@dataclass(frozen=True, slots=True)
class Retire:
    """Stop a slot on purpose: drain it when a process is alive, else just drop it."""

    slot_id: str


Action = NewSlot | Spawn | Retire

# Which slots to retire first when there are too many: those doing no work.
_RETIRE_ORDER = {
    WorkerState.NEW: 0,
    WorkerState.FAILED: 1,
    WorkerState.BACKOFF: 2,
    WorkerState.EXITED: 3,
    WorkerState.STARTING: 4,
    WorkerState.READY: 5,
}


def counts(slot: SlotView) -> bool:
    """Whether a slot counts toward its release's desired number.

    A slot being recycled or liveness-killed still counts: its process is replaced in place.
    """
    return not slot.retiring and not slot.surge and slot.state is not WorkerState.STOPPED


def plan(desired: Mapping[str, int], observed: Sequence[SlotView], now: float) -> list[Action]:
    """Actions that move ``observed`` toward ``desired`` at time ``now``.

    A FAILED slot keeps its place (it is not replaced by a fresh slot, or a boot failure would
    become a tight loop under another name); an operator's restart revives it.
    """
    actions: list[Action] = []
    by_release: dict[str, list[SlotView]] = {}
    for slot in observed:
        if counts(slot):
            by_release.setdefault(slot.release, []).append(slot)
    for release in sorted(set(by_release) | set(desired)):
        want = max(0, desired.get(release, 0))
        have = by_release.get(release, [])
        if len(have) < want:
            actions.extend(NewSlot(release) for _ in range(want - len(have)))
        elif len(have) > want:
            ranked = sorted(have, key=lambda s: (_RETIRE_ORDER.get(s.state, 9), -s.index))
            actions.extend(Retire(s.slot_id) for s in ranked[: len(have) - want])
    retiring = {a.slot_id for a in actions if isinstance(a, Retire)}
    for slot in observed:
        if slot.slot_id in retiring:
            continue
        if slot.state is WorkerState.NEW or (
            slot.state is WorkerState.BACKOFF
            and slot.restart_at is not None
            and slot.restart_at <= now
        ):
            actions.append(Spawn(slot.slot_id))
    return actions


def is_live(state: WorkerState) -> bool:
    return state in LIVE_STATES
