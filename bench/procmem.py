"""Memory and CPU of other processes, read from /proc (Linux), for the benchmark scripts.

RSS counts every resident page a process maps, including pages it shares with its zygote
and its sibling workers; PSS divides each shared page among the processes that map it, so
the PSS of all workers adds up to the memory they really use together.

    with MemorySampler([pid]) as memory:     # RSS every 0.1 s, PSS every 0.5 s
        ...
    memory.peak_rss[pid], memory.peak_pss[pid]
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable

PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """Resident set size (``/proc/<pid>/statm``: cheap, no page-table walk)."""
    with open(f"/proc/{pid}/statm") as handle:
        return int(handle.read().split()[1]) * PAGE


def pss_bytes(pid: int) -> int:
    """Proportional set size (``/proc/<pid>/smaps_rollup``; walks the page tables)."""
    with open(f"/proc/{pid}/smaps_rollup") as handle:
        for line in handle:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no Pss line in /proc/{pid}/smaps_rollup")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of all the process's threads (``/proc/<pid>/stat``)."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def main_thread_cpu_seconds(pid: int) -> float:
    """User + system CPU of the process's main thread alone (``/proc/<pid>/task/<pid>/stat``):
    in a Falcon worker, the event loop; the rest of ``cpu_seconds`` is its other threads (the
    request-log shipper, the access-log flusher)."""
    with open(f"/proc/{pid}/task/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (all its threads' children)."""
    found: list[int] = []
    with contextlib.suppress(FileNotFoundError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found += [int(p) for p in handle.read().split()]
    return found


class MemorySampler:
    """Peak RSS and PSS of some processes, sampled in a thread while the block runs."""

    def __init__(self, pids: Iterable[int], rss_every: float = 0.1, pss_every: float = 0.5):
        self.pids = list(pids)
        self.peak_rss = dict.fromkeys(self.pids, 0)
        self.peak_pss = dict.fromkeys(self.pids, 0)
        self._every = rss_every
        self._pss_ratio = max(1, round(pss_every / rss_every))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self, with_pss: bool = True) -> None:
        for pid in self.pids:
            with contextlib.suppress(OSError, RuntimeError):
                self.peak_rss[pid] = max(self.peak_rss[pid], rss_bytes(pid))
                if with_pss:
                    self.peak_pss[pid] = max(self.peak_pss[pid], pss_bytes(pid))

    def _run(self) -> None:
        tick = 0
        while not self._stop.wait(self._every):
            tick += 1
            self.sample(with_pss=tick % self._pss_ratio == 0)

    def __enter__(self) -> MemorySampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()
