"""Where a worker's CPU goes: py-spy samples summarised per function, for bench/run.py.

    with Profiler(pid, seconds, out_dir / "falcon-embedded.txt"):   # py-spy record -f raw
        ...load...
    print(summarise(out_dir / "falcon-embedded.txt", us_per_request=110.0))

``summarise`` reads py-spy's collapsed stacks and prints, for the functions that appear in
the most samples, the share of samples whose stack contains them (inclusive) and the share
where they are the innermost frame (self), each also as microseconds per request (the share
times the worker's measured CPU per request). Idle threads are not sampled (py-spy's default)
and samples of threads waiting in Python (see ``_WAITING``) are left out.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

_LINE = re.compile(r" \((?P<file>[^()]*?)(?::\d+)?\)$")
# Frames every sample of a thread passes through (entry points, the loop's runner): they say
# nothing about where the time goes, so the summary leaves them out.
_PLUMBING = ("click/", "runpy", "uvicorn/main.py", "uvicorn/__main__.py", "uvicorn/_compat.py",
             "uvicorn/server.py", "asyncio/runners.py", "threading.py")  # fmt: skip
# Innermost frames of a thread that waits, not computes: the event loop in epoll (uvloop's
# loop is C, so its innermost Python frame is the runner), the shipper and log threads
# between flushes, psycopg waiting for the server. Their samples are left out of the shares.
_WAITING = ("Runner.run (asyncio/runners.py)", "Condition.wait (threading.py)",
            "Event.wait (threading.py)", "Connection.wait (psycopg/connection.py)")  # fmt: skip
PY_SPY = Path(sys.executable).parent / "py-spy"


class Profiler:
    """``py-spy record`` on ``pid`` for ``seconds`` while the block runs (250 Hz, raw)."""

    def __init__(self, pid: int, seconds: float, out: Path) -> None:
        self.cmd = [str(PY_SPY), "record", "-p", str(pid), "-r", "250", "-f", "raw",
                    "-d", str(max(1, int(seconds))), "-o", str(out), "--nonblocking"]  # fmt: skip
        self.out = out
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Profiler:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)  # fmt: skip
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.wait(120)


def _short(frame: str) -> str:
    """``handle (falcon_platform/serving/inference.py:120)`` -> without the line number and
    with the path trimmed to the package."""
    match = _LINE.search(frame)
    name = frame[: match.start()] if match else frame
    path = match.group("file") if match else ""
    for marker in ("site-packages/", "src/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})" if path else name


def summarise(raw: Path, us_per_request: float, top: int = 25) -> str:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = waiting = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_short(f) for f in stack.split(";")]
        if frames[-1] in _WAITING:
            waiting += n
            continue
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            if not any(p in frame for p in _PLUMBING):
                inclusive[frame] += n
    if not total:
        return f"{raw}: no samples"
    lines = [f"{raw.name}: {total} busy samples ({waiting} waiting ones left out); share of "
             f"busy samples (and us per request at {us_per_request:.0f} us CPU/request)",
             "  inclusive:"]  # fmt: skip
    for frame, n in inclusive.most_common(top):
        lines.append(f"    {n / total:6.1%} {n / total * us_per_request:6.1f} us  {frame}")
    lines.append("  self:")
    for frame, n in own.most_common(top):
        lines.append(f"    {n / total:6.1%} {n / total * us_per_request:6.1f} us  {frame}")
    return "\n".join(lines)
