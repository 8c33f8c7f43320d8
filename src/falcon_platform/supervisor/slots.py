"""The supervisor's record of one worker slot and of the releases it runs (plain data)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from falcon_platform.config.settings import Settings
from falcon_platform.supervisor.lifecycle import LIVE_STATES, WorkerEvent, WorkerState, apply
from falcon_platform.supervisor.plan import SlotView
from falcon_platform.supervisor.restarts import ExitInfo
from falcon_platform.worker.zygote import ReparentedProcess


@dataclass
class Release:
    """An immutable pairing of model + settings: the ``FALCON_*`` overrides its workers get."""

    id: str
    env: dict[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    # This release's own gate decision for its workers (``--override-gate REASON``,
    # ``--allow-faults``): never inherited from another release.
    gate_args: tuple[str, ...] = ()
    # The merged settings its workers run with, as the gate loaded them (None: not judged).
    settings: Settings | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "env": dict(self.env),
            "created_at": self.created_at,
            "gate_overridden": "--override-gate" in self.gate_args,
            "faults_allowed": "--allow-faults" in self.gate_args,
        }


def next_release_id(releases: Iterable[str]) -> str:
    """``r<n+1>`` after the highest ``r<n>`` among ``releases`` (``r1`` when there is none)."""
    numbers = [int(r[1:]) for r in releases if r[:1] == "r" and r[1:].isdigit()]
    return f"r{max(numbers, default=0) + 1}"


@dataclass
class Slot:
    slot_id: str
    release: str
    index: int
    admin_socket: Path
    state: WorkerState = WorkerState.NEW
    proc: subprocess.Popen[bytes] | ReparentedProcess | None = None
    notify_fd: int | None = None
    notify_buffer: bytes = b""
    # times: wall (epoch s) for the journal and status, monotonic for decisions
    started_wall: float | None = None
    started_mono: float | None = None
    ready_wall: float | None = None
    ready_mono: float | None = None
    restarts: int = 0
    recycles: int = 0  # replaced at the soft memory limit (not counted in restarts)
    attempt: int = -1  # back-off attempt of the last restart; -1 = never restarted
    restart_at: float | None = None  # monotonic
    backoff_s: float | None = None
    boot_failures: int = 0
    boot_message: str | None = None
    last_exit: ExitInfo | None = None
    last_exit_wall: float | None = None
    liveness_failures: int = 0
    deadline: float | None = None  # monotonic: SIGKILL after this while DRAINING/KILLING
    retiring: bool = False
    surge: bool = False
    recycling: bool = False
    liveness_killed: bool = False
    watchdog_killed: bool = False
    rss_bytes: int | None = None
    peak_rss_bytes: int = 0
    pss_bytes: int | None = None  # what the limits apply to (sampled less often than RSS)
    uss_bytes: int | None = None
    peak_pss_bytes: int = 0
    owned_sampled_mono: float = float("-inf")  # when PSS/USS were last read
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.state in LIVE_STATES else None

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES

    def move(self, event: WorkerEvent) -> WorkerState:
        self.state = apply(self.state, event)
        return self.state

    def view(self) -> SlotView:
        return SlotView(
            self.slot_id,
            self.release,
            self.state,
            restart_at=self.restart_at,
            retiring=self.retiring,
            surge=self.surge,
            index=self.index,
        )

    def reset_process_flags(self) -> None:
        self.liveness_failures = 0
        self.deadline = None
        self.recycling = False
        self.liveness_killed = False
        self.watchdog_killed = False
        self.rss_bytes = None
        self.peak_rss_bytes = 0
        self.pss_bytes = self.uss_bytes = None
        self.peak_pss_bytes = 0
        self.owned_sampled_mono = float("-inf")
        self.ready_wall = self.ready_mono = None
        self.boot_message = None
        self.extra.clear()
