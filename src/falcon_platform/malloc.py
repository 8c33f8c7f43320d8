"""glibc's malloc, tuned for a long-lived serving worker: a fixed mmap threshold.

    fix_mmap_threshold()     # at worker start; True when set

glibc serves a block of at least the *mmap threshold* (128 KiB at start) with its own
``mmap``, returned to the kernel when freed. But each time such a block is freed, glibc raises
the threshold to that block's size (up to 32 MiB), and from then on blocks of that size come
from the heap, where freed space is kept and fragments. In a worker the response cache's
tables (~1-4 MB, rebuilt every few seconds under churn) push the threshold up, and the heap
grew ~10 MB over 2.5 minutes of load, with no end in sight; with the threshold held at 1 MiB it
stayed flat, at no measurable CPU cost (docs/CAPACITY_PLAN.md, issue 17 phase 4). Smaller
blocks (NumPy's per-batch arrays) stay in the heap: a 128 KiB threshold cost ~10 µs a request
in page faults. ``MALLOC_MMAP_THRESHOLD_`` in the environment wins (an operator's choice).
"""

from __future__ import annotations

import ctypes
import os
import sys

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)
MMAP_THRESHOLD_BYTES = 1 << 20


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Hold glibc's mmap threshold at ``threshold`` bytes; False where that is not possible
    (not Linux, a C library without ``mallopt``) or the environment already sets it."""
    if sys.platform != "linux" or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, threshold))
