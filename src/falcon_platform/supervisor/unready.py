"""While no worker is ready: wait in the backlog, or answer 503 at once? (pure decisions)

The supervisor holds the public socket; when no worker accepts, connections sit in the
kernel's backlog until one does. That is right for a few seconds (workers recycled at the soft
memory limit are replaced from their zygote: under the seed's leak every worker recycles at
once, drain ~5 s + fork ~2 s measured; a client waiting that long is served, one told to come
back is not) and wrong for longer (a client that hangs for minutes, and alerts that never see
a failure). The rule::

    answer 503 now  if no worker is ready and no slot holds the door:
    a slot holds it while it is expected ready within its allowance and the allowance has not
    run out since the last worker was ready:
        a soft-limit recycle (planned, bounded):  `workers.no_ready_grace` (10 s)
        anything else (a first boot, a back-off due soon):  at most 2 s
    never: back-off far away, crash loop, boot failures, retiring, the supervisor stopping

"Can be ready soon" means: starting (or about to start, or being replaced at once after a
recycle) without a boot failure behind it and outside a crash loop, or backing off with its
restart due within the grace. ``Retry-After`` says when the next worker is expected::

    decide_unready([SlotOutlook(WorkerState.BACKOFF, restart_at=112.0)], no_ready_since=100.0,
                   now=101.0, grace=10.0, stopping=False)
    # -> UnreadyDecision(answer=True, retry_after_s=12, why="restarting after a crash ...")
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from falcon_platform.supervisor.lifecycle import WorkerState

RETRY_AFTER_MIN_S = 1
RETRY_AFTER_MAX_S = 300
RETRY_AFTER_NEEDS_OPERATOR_S = 30  # every worker failed to boot: someone must act
EXPECTED_BOOT_S = 1.0  # a restart from the zygote is ready in ~0.3 s; a cold one takes longer
# A cold first boot takes 3-15 s here: clients with a 5 s time-out are better told 503 early.
UNPLANNED_GRACE_S = 2.0


@dataclass(frozen=True, slots=True)
class SlotOutlook:
    """What the decision needs to know about one slot (plain data, built by the shell)."""

    state: WorkerState
    restart_at: float | None = None  # monotonic, while BACKOFF
    boot_failures: int = 0  # consecutive failed boots behind it
    crash_looping: bool = False  # its release is in CrashLoopBackOff
    recycling: bool = False  # draining to be replaced at once, or replacing one (soft limit)
    retiring: bool = False  # going away on purpose: never ready again
    boot_message: str | None = None


@dataclass(frozen=True, slots=True)
class UnreadyDecision:
    answer: bool  # the supervisor answers 503 itself
    retry_after_s: int
    why: str  # for the error body, the journal and the log; names no path or secret


def _soon(slot: SlotOutlook, now: float, allowance: float) -> bool:
    """The slot is expected ready within ``allowance`` seconds."""
    if slot.retiring or slot.crash_looping or slot.boot_failures > 0:
        return False
    if slot.state in (WorkerState.NEW, WorkerState.STARTING):
        return True
    if slot.state in (WorkerState.DRAINING, WorkerState.KILLING) and slot.recycling:
        return True
    if slot.state is WorkerState.BACKOFF and slot.restart_at is not None:
        return max(0.0, slot.restart_at - now) <= allowance
    return False


def _allowance(slot: SlotOutlook, grace: float) -> float:
    return grace if slot.recycling else min(grace, UNPLANNED_GRACE_S)


def _expected(slot: SlotOutlook, now: float) -> float | None:
    """Seconds until the slot may be ready at best, however long (None: never by itself)."""
    if slot.retiring or slot.state in (WorkerState.FAILED, WorkerState.STOPPED):
        return None
    if slot.state is WorkerState.BACKOFF and slot.restart_at is not None:
        return max(0.0, slot.restart_at - now) + EXPECTED_BOOT_S
    return EXPECTED_BOOT_S


def _why(slots: Sequence[SlotOutlook], stopping: bool) -> str:
    if stopping:
        return "the service is shutting down"
    if not slots:
        return "no worker is configured"
    states = {s.state for s in slots if not s.retiring}
    if states and states <= {WorkerState.FAILED}:
        return "every worker failed to start; an operator must fix it"
    if any(s.boot_failures > 0 for s in slots):
        return "workers are failing to start and are being retried"
    if any(s.crash_looping for s in slots):
        return "workers keep crashing and are restarted with back-off"
    if WorkerState.BACKOFF in states:
        return "workers are restarting after a crash"
    return "workers are starting"


def decide_unready(
    slots: Sequence[SlotOutlook],
    *,
    no_ready_since: float,
    now: float,
    grace: float,
    stopping: bool,
) -> UnreadyDecision:
    """Whether the supervisor answers requests itself now (only call it when none is ready).

    ``no_ready_since`` is the monotonic time the last ready worker went away (or the
    supervisor started); ``grace`` is ``spec.workers.no_ready_grace`` (for recycles; other
    waits are capped at ``UNPLANNED_GRACE_S``).
    """
    expected = [e for s in slots if (e := _expected(s, now)) is not None]
    retry = math.ceil(min(expected)) if expected else RETRY_AFTER_NEEDS_OPERATOR_S
    retry_after = max(RETRY_AFTER_MIN_S, min(RETRY_AFTER_MAX_S, retry))
    why = _why(slots, stopping)
    if stopping:
        return UnreadyDecision(True, retry_after, why)
    waited = now - no_ready_since
    holding = [s for s in slots if (a := _allowance(s, grace)) > waited and _soon(s, now, a)]
    return UnreadyDecision(not holding, retry_after, why)


def cannot_boot(slots: Sequence[SlotOutlook], *, ever_ready: bool) -> str | None:
    """Why this deployment cannot serve at all, for the command line: no worker was ever ready
    in this supervisor's life and every worker it wants has given up booting. None otherwise."""
    wanted = [s for s in slots if not s.retiring and s.state is not WorkerState.STOPPED]
    if ever_ready or not wanted or any(s.state is not WorkerState.FAILED for s in wanted):
        return None
    messages = sorted({s.boot_message for s in wanted if s.boot_message})
    reason = "; ".join(messages) if messages else "see the supervisor's log"
    return f"no worker could start ({len(wanted)} failed to boot): {reason}"
