"""A serving worker holds glibc's mmap threshold fixed, so freed big blocks leave the process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from falcon_platform.malloc import fix_mmap_threshold

# Frees an 8 MiB block (glibc's own mmap), then allocates 2 MiB and reports how much the heap
# grew: with glibc's dynamic threshold the 2 MiB come from the heap, with a fixed 1 MiB they
# are mmapped apart and the heap does not move.
PROBE = """
import json, sys
from falcon_platform.malloc import fix_mmap_threshold
def heap_kib():
    size = 0
    for line in open("/proc/self/maps"):
        if line.rstrip().endswith("[heap]"):
            start, end = (int(x, 16) for x in line.split()[0].split("-"))
            size += (end - start) // 1024
    return size
fixed = fix_mmap_threshold() if sys.argv[1] == "fix" else False
big = bytearray(8 << 20)
del big
before = heap_kib()
blocks = [bytearray(2 << 20) for _ in range(4)]
print(json.dumps([fixed, heap_kib() - before]))
"""


def _probe(mode: str) -> tuple[bool, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], env=env, capture_output=True,
                         text=True, timeout=60, check=True).stdout  # fmt: skip
    fixed, grown_kib = json.loads(out)
    return fixed, grown_kib


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's malloc")
def test_with_the_threshold_fixed_big_blocks_stay_out_of_the_heap() -> None:
    assert _probe("dynamic") == (False, pytest.approx(8192, abs=1024))  # 4 x 2 MiB in the heap
    fixed, grown_kib = _probe("fix")
    assert fixed
    assert grown_kib < 1024, grown_kib


def test_an_operators_malloc_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert not fix_mmap_threshold()
