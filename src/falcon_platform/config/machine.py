"""Facts about the machine the gate needs (memory, cores), read once at the edge.

The policy is pure and takes a ``MachineFacts``; only :func:`read_machine_facts`
touches ``/proc`` and the cgroup files::

    facts = read_machine_facts()          # e.g. MachineFacts(memory_mb=24032, cpu_count=2)
    evaluate_policy(settings, spec, facts, allow_faults=False)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# A cgroup v1 "no limit" is a huge page-aligned number; anything above 1 PiB means none.
_NO_LIMIT = 1 << 50


@dataclass(frozen=True)
class MachineFacts:
    memory_mb: int
    cpu_count: int
    source: str = "given"
    # True when memory_mb is this process's own cgroup limit (a container), not the RAM.
    cgroup_limited: bool = False


def parse_meminfo(text: str) -> int:
    """``MemTotal:  24608000 kB`` -> MB. Raises ValueError when the line is missing."""
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise ValueError("no MemTotal line in /proc/meminfo")


def _cgroup_limit_mb(root: Path) -> int | None:
    for candidate in (root / "memory.max", root / "memory" / "memory.limit_in_bytes"):
        try:
            raw = candidate.read_text().strip()
        except OSError:
            continue
        if raw.isdigit() and int(raw) < _NO_LIMIT:
            return int(raw) // 1_048_576
    return None


def read_machine_facts(
    meminfo: Path = Path("/proc/meminfo"), cgroup_root: Path = Path("/sys/fs/cgroup")
) -> MachineFacts:
    """Total memory (the smaller of RAM and this cgroup's limit) and the core count."""
    memory = parse_meminfo(meminfo.read_text())
    source = str(meminfo)
    limit = _cgroup_limit_mb(cgroup_root)
    limited = limit is not None and limit < memory
    if limited and limit is not None:
        memory, source = limit, f"cgroup limit under {cgroup_root}"
    return MachineFacts(
        memory_mb=memory, cpu_count=os.cpu_count() or 1, source=source, cgroup_limited=limited
    )
