"""Per-worker memory limits: a kernel memory cgroup when possible, else a memory watchdog.

Kubernetes semantics: at the limit the worker is SIGKILLed and the exit is recorded as
OOMKilled (137) with its peak memory. :func:`detect_enforcer` picks the strongest method
this process may use::

    enforcer = detect_enforcer(run_id="sup-4242")   # CgroupV1Enforcer on this machine (root)
    enforcer.attach("w1", pid, limit_bytes=512 * 2**20)
    ...                                              # after the process exited:
    enforcer.oom_killed("w1"), enforcer.peak_bytes("w1"); enforcer.release("w1")

The watchdog itself (sampling RSS every ``spec.workers.watchdog_interval``, and PSS, which the
limits apply to, when RSS reaches a limit) lives in the supervisor loop; the decision is
:func:`config.memory.memory_action`. :func:`owned_memory` reads PSS and USS.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import psutil

log = logging.getLogger("falcon.supervisor.memory")


class MemoryEnforcer(Protocol):
    kind: str  # "cgroup-v1" | "cgroup-v2" | "watchdog"
    kernel_enforced: bool

    def attach(self, worker_id: str, pid: int, limit_bytes: int | None) -> None: ...

    def oom_killed(self, worker_id: str) -> bool: ...

    def peak_bytes(self, worker_id: str) -> int | None: ...

    def release(self, worker_id: str) -> None: ...

    def close(self) -> None: ...


class WatchdogEnforcer:
    """No cgroup available: the supervisor's memory watchdog SIGKILLs at the limit."""

    kind = "watchdog"
    kernel_enforced = False

    def attach(self, worker_id: str, pid: int, limit_bytes: int | None) -> None:
        del worker_id, pid, limit_bytes

    def oom_killed(self, worker_id: str) -> bool:
        del worker_id
        return False

    def peak_bytes(self, worker_id: str) -> int | None:
        del worker_id
        return None

    def release(self, worker_id: str) -> None:
        del worker_id

    def close(self) -> None:
        return None


def _write(path: Path, value: str) -> None:
    path.write_text(value)


class _CgroupEnforcer:
    kind = "cgroup"
    kernel_enforced = True
    _limit_file = ""
    _peak_file = ""

    def __init__(self, parent: Path) -> None:
        self.parent = parent

    def _group(self, worker_id: str) -> Path:
        return self.parent / worker_id

    def attach(self, worker_id: str, pid: int, limit_bytes: int | None) -> None:
        group = self._group(worker_id)
        if group.exists():
            self._remove(group)
        group.mkdir(exist_ok=True)
        if limit_bytes is not None:
            _write(group / self._limit_file, str(limit_bytes))
        self._after_create(group)
        _write(group / "cgroup.procs", str(pid))

    def _after_create(self, group: Path) -> None:
        del group

    def oom_killed(self, worker_id: str) -> bool:
        return self._oom_count(self._group(worker_id)) > 0

    def _oom_count(self, group: Path) -> int:
        raise NotImplementedError

    def peak_bytes(self, worker_id: str) -> int | None:
        try:
            return int((self._group(worker_id) / self._peak_file).read_text().strip())
        except (OSError, ValueError):
            return None

    def _remove(self, group: Path) -> None:
        with contextlib.suppress(OSError):  # still busy or already gone: harmless, retried later
            group.rmdir()

    def release(self, worker_id: str) -> None:
        self._remove(self._group(worker_id))

    def close(self) -> None:
        if self.parent.exists():
            for child in self.parent.iterdir():
                if child.is_dir():
                    self._remove(child)
            self._remove(self.parent)


def _read_flat_keyed(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            with contextlib.suppress(ValueError):
                out[key] = int(value)
    return out


class CgroupV1Enforcer(_CgroupEnforcer):
    kind = "cgroup-v1"
    _limit_file = "memory.limit_in_bytes"
    _peak_file = "memory.max_usage_in_bytes"

    def _after_create(self, group: Path) -> None:
        # A standby worker allocated its model before it got a slot: move those pages with it.
        with contextlib.suppress(OSError):
            _write(group / "memory.move_charge_at_immigrate", "3")
        # Without swap accounting limits, a swapping worker would slowly page instead of dying.
        with contextlib.suppress(OSError):
            limit = (group / self._limit_file).read_text().strip()
            _write(group / "memory.memsw.limit_in_bytes", limit)

    def _oom_count(self, group: Path) -> int:
        return _read_flat_keyed(group / "memory.oom_control").get("oom_kill", 0)


class CgroupV2Enforcer(_CgroupEnforcer):
    kind = "cgroup-v2"
    _limit_file = "memory.max"
    _peak_file = "memory.peak"

    def _after_create(self, group: Path) -> None:
        with contextlib.suppress(OSError):
            _write(group / "memory.swap.max", "0")

    def _oom_count(self, group: Path) -> int:
        return _read_flat_keyed(group / "memory.events").get("oom_kill", 0)


def _own_cgroup_paths() -> tuple[str | None, str | None]:
    """This process's memory cgroup path in the v1 hierarchy and its v2 path."""
    v1 = v2 = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controllers == "":
                v2 = path
            elif "memory" in controllers.split(","):
                v1 = path
    return v1, v2


def _mounts() -> list[tuple[str, str, str]]:
    found = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 4 and parts[2] in ("cgroup", "cgroup2"):
                found.append((parts[2], parts[1], parts[3]))
    return found


def _try_parent(base: Path, run_id: str) -> Path | None:
    parent = base / f"falcon-{run_id}"
    try:
        parent.mkdir(exist_ok=True)
        probe = parent / "probe"
        probe.mkdir(exist_ok=True)
        probe.rmdir()
    except OSError:
        return None
    return parent


def detect_enforcer(run_id: str, *, prefer: str = "auto") -> MemoryEnforcer:
    """The strongest enforcement available: cgroup v1, cgroup v2, else the RSS watchdog.

    ``prefer`` is ``auto`` | ``cgroup`` | ``watchdog`` (``FALCON_MEMORY_ENFORCEMENT``): tests use it
    to exercise both methods on one machine.
    """
    if prefer == "watchdog" or os.geteuid() != 0:
        return WatchdogEnforcer()
    v1_path, v2_path = _own_cgroup_paths()
    for fstype, mountpoint, options in _mounts():
        if fstype == "cgroup" and "memory" in options.split(",") and v1_path is not None:
            for base in (Path(mountpoint) / v1_path.lstrip("/"), Path(mountpoint)):
                parent = _try_parent(base, run_id)
                if parent is not None:
                    return CgroupV1Enforcer(parent)
    for fstype, mountpoint, _ in _mounts():
        if fstype == "cgroup2" and v2_path is not None:
            base = Path(mountpoint) / v2_path.lstrip("/")
            try:
                controllers = (base / "cgroup.controllers").read_text().split()
            except OSError:
                continue
            if "memory" not in controllers:
                continue
            parent = _try_parent(base, run_id)
            if parent is None:
                continue
            try:
                _write(parent / "cgroup.subtree_control", "+memory")
            except OSError:
                with contextlib.suppress(OSError):
                    parent.rmdir()
                continue
            return CgroupV2Enforcer(parent)
    log.warning("no writable memory cgroup; enforcing memory limits with the RSS watchdog")
    return WatchdogEnforcer()


@dataclass(frozen=True, slots=True)
class OwnedMemory:
    """What a process owns: PSS (its share of every page it maps) and USS (private pages)."""

    pss_bytes: int
    uss_bytes: int


def parse_smaps_rollup(text: str) -> OwnedMemory | None:
    """PSS and USS from the text of ``/proc/<pid>/smaps_rollup`` (None without a Pss line)."""
    kib: dict[str, int] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        parts = rest.split()
        if sep and len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            kib[name] = int(parts[0])
    if "Pss" not in kib:
        return None
    private = kib.get("Private_Clean", 0) + kib.get("Private_Dirty", 0)
    return OwnedMemory(pss_bytes=kib["Pss"] * 1024, uss_bytes=private * 1024)


def owned_memory(pid: int) -> OwnedMemory | None:
    """PSS and USS of ``pid`` now (a walk of its page tables), or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    return parse_smaps_rollup(text)


def rss_bytes(pid: int) -> int | None:
    """Resident set size of ``pid`` now, or None when it is gone."""
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
