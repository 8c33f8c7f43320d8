"""A rolling restart that stops says why: the replacement's boot message survives its slot."""

from __future__ import annotations

from pathlib import Path

from falcon_platform.supervisor.lifecycle import WorkerState
from falcon_platform.supervisor.restarts import ExitInfo, ExitReason
from falcon_platform.supervisor.rolling import (
    RollingRestart,
    note_dropped_slot,
    why_worker_failed,
)
from falcon_platform.supervisor.slots import Slot

BOOT_FAILED = ExitInfo(78, None, ExitReason.BOOT_FAILED, False, None, True, False)


def _slot(slot_id: str, **kw: object) -> Slot:
    return Slot(slot_id, "r1", 1, Path(f"/nonexistent/{slot_id}.sock"), WorkerState.STOPPED, **kw)  # type: ignore[arg-type]


def test_the_boot_message_is_the_reason() -> None:
    slot = _slot("w2", boot_message="ModelNotFoundError: no model at /x", last_exit=BOOT_FAILED)
    assert why_worker_failed(slot) == "ModelNotFoundError: no model at /x"


def test_without_a_message_the_exit_is_the_reason() -> None:
    assert why_worker_failed(_slot("w2", last_exit=BOOT_FAILED)) == (
        "the replacement worker exited during boot: BootFailed (exit code 78)"
    )


def test_a_dropped_replacement_leaves_its_reason_on_the_restart() -> None:
    rolling = RollingRestart("r1", [], 0.0, current_old="w1", current_new="w2")
    note_dropped_slot(rolling, _slot("w3", boot_message="not this one"))
    assert rolling.replacement_exit is None  # another slot: ignored
    note_dropped_slot(rolling, _slot("w2", boot_message="policy violation: faults-enabled"))
    assert rolling.replacement_exit == "policy violation: faults-enabled"
