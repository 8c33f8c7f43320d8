"""When the supervisor answers 503 itself: a pure rule over the slots (supervisor/unready.py).

Expected values are from the rule as documented (docs/ARCHITECTURE.md "When no worker is
ready"): wait in the backlog for at most ``grace`` while a worker is expected back within it,
answer at once when none can be.
"""

from __future__ import annotations

import pytest

from falcon_platform.supervisor.lifecycle import WorkerState
from falcon_platform.supervisor.unready import (
    SlotOutlook,
    UnreadyDecision,
    cannot_boot,
    decide_unready,
)

S = WorkerState
GRACE = 2.0  # the rule with a short grace (the spec default is 10 s)
NOW = 100.0


def decide(
    slots: list[SlotOutlook], *, down_for: float = 0.0, stopping: bool = False
) -> UnreadyDecision:
    return decide_unready(
        slots, no_ready_since=NOW - down_for, now=NOW, grace=GRACE, stopping=stopping
    )


# (case, slots, seconds without a ready worker, answer now?, Retry-After)
CASES = [
    ("recycle: replaced from the zygote at once", [SlotOutlook(S.DRAINING, recycling=True)], 0.5, False, 1),
    ("recycle taking longer than the grace", [SlotOutlook(S.DRAINING, recycling=True)], 2.0, True, 1),
    ("first boot of `falcon up`", [SlotOutlook(S.STARTING)], 1.0, False, 1),
    ("first boot slower than the grace", [SlotOutlook(S.STARTING)], 2.5, True, 1),
    ("back-off due within the grace", [SlotOutlook(S.BACKOFF, restart_at=NOW + 1.5)], 0.0, False, 3),
    ("back-off of 10 s after a crash", [SlotOutlook(S.BACKOFF, restart_at=NOW + 10.0)], 0.0, True, 11),
    ("crash loop: even a short back-off", [SlotOutlook(S.BACKOFF, restart_at=NOW + 1, crash_looping=True)], 0.0, True, 2),
    ("boot failed before: retried, but no hope soon", [SlotOutlook(S.STARTING, boot_failures=1)], 0.0, True, 1),
    ("every worker gave up booting", [SlotOutlook(S.FAILED), SlotOutlook(S.FAILED)], 0.0, True, 30),
    ("liveness-killed, back-off pending", [SlotOutlook(S.KILLING)], 0.0, True, 1),
    ("nothing desired", [], 0.0, True, 30),
    ("one soon is enough to wait", [SlotOutlook(S.FAILED), SlotOutlook(S.STARTING)], 0.0, False, 1),
    ("retiring workers never come back", [SlotOutlook(S.DRAINING, retiring=True)], 0.0, True, 30),
    ("back-off capped at 300 s", [SlotOutlook(S.BACKOFF, restart_at=NOW + 900)], 0.0, True, 300),
]  # fmt: skip


@pytest.mark.parametrize(
    ("slots", "down_for", "answer", "retry_after"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_rule(slots: list[SlotOutlook], down_for: float, answer: bool, retry_after: int) -> None:
    decision = decide(slots, down_for=down_for)
    assert (decision.answer, decision.retry_after_s) == (answer, retry_after)


def test_a_recycle_may_hold_the_door_for_the_whole_grace_a_first_boot_for_2_s() -> None:
    """With the default grace (10 s): workers recycled together under the seed's leak are back
    in ~7 s (drain ~5 s + fork ~2 s) and clients wait; a cold first boot (3-15 s) gets 503s
    after 2 s, before clients with a 5 s time-out give up."""
    draining = SlotOutlook(S.DRAINING, recycling=True)
    replacing = SlotOutlook(S.STARTING, recycling=True)  # last exit: Recycled
    first_boot = SlotOutlook(S.STARTING)
    for slots, down_for, answer in [
        ([draining, draining], 7.0, False),
        ([replacing, replacing], 9.5, False),
        ([replacing], 10.0, True),
        ([first_boot], 1.5, False),
        ([first_boot], 2.0, True),
        ([first_boot, draining], 5.0, False),  # the recycle still holds it
    ]:
        decision = decide_unready(
            slots, no_ready_since=NOW - down_for, now=NOW, grace=10.0, stopping=False
        )
        assert decision.answer is answer, (slots, down_for)


def test_stopping_answers_at_once_and_says_so() -> None:
    decision = decide([SlotOutlook(S.DRAINING, retiring=True)], stopping=True)
    assert decision.answer
    assert decision.why == "the service is shutting down"


@pytest.mark.parametrize(
    ("slots", "why"),
    [
        ([SlotOutlook(S.FAILED)], "every worker failed to start; an operator must fix it"),
        ([SlotOutlook(S.BACKOFF, restart_at=NOW + 5, boot_failures=2)], "failing to start"),
        ([SlotOutlook(S.BACKOFF, restart_at=NOW + 5, crash_looping=True)], "keep crashing"),
        ([SlotOutlook(S.BACKOFF, restart_at=NOW + 5)], "restarting after a crash"),
    ],
)
def test_the_reason_is_for_clients_and_names_no_internals(
    slots: list[SlotOutlook], why: str
) -> None:
    assert why in decide(slots).why


def test_cannot_boot_only_when_every_wanted_worker_gave_up_and_none_was_ever_ready() -> None:
    failed = SlotOutlook(S.FAILED, boot_message="ModelNotFoundError: no model at /m")
    assert cannot_boot([failed, failed], ever_ready=False) == (
        "no worker could start (2 failed to boot): ModelNotFoundError: no model at /m"
    )
    assert cannot_boot([failed, failed], ever_ready=True) is None  # it served before
    assert cannot_boot([failed, SlotOutlook(S.BACKOFF)], ever_ready=False) is None
    assert cannot_boot([], ever_ready=False) is None
    assert cannot_boot([failed, SlotOutlook(S.STOPPED)], ever_ready=False) is not None
