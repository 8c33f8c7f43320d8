"""Memory slope per worker by least squares, with its standard error, and time to the limit.

Pure arithmetic over samples (seconds, bytes, process id)::

    fit = fit_slope([MemorySample(0, 100 * MB, 7), MemorySample(60, 160 * MB, 7), ...])
    fit.slope_mb_per_min, fit.stderr_mb_per_min      # 60.0, 0.0
    minutes_to_limit(last_mb=160, limit_mb=512, slope_mb_per_min=60)   # 5.87

A worker that restarts during the run (an OOM kill, a recycle) starts a new *segment*: its
memory falls back to the start-up level. One common slope is fitted across segments, each
with its own intercept (a fixed-effects regression), so a leak that is killed and comes back
is still measured as one slope instead of a saw-tooth averaging to nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

MB = 1_048_576  # the project's MB (memory_limit_mb) is a mebibyte


@dataclass(frozen=True, slots=True)
class MemorySample:
    t: float  # seconds since the run started
    bytes: int
    segment: int  # the process id: a new one means the worker restarted


@dataclass(frozen=True, slots=True)
class SlopeFit:
    slope_mb_per_min: float
    stderr_mb_per_min: float  # inf when there are too few points to estimate it
    points: int
    segments: int

    def interval(self, z: float = 2.0) -> tuple[float, float]:
        """``slope +- z * stderr`` (z=2: about 95% if the residuals were independent)."""
        return (
            self.slope_mb_per_min - z * self.stderr_mb_per_min,
            self.slope_mb_per_min + z * self.stderr_mb_per_min,
        )

    def describe(self) -> str:
        if math.isinf(self.stderr_mb_per_min):
            return f"{self.slope_mb_per_min:+.2f} MB/min (too few samples for an error bar)"
        return f"{self.slope_mb_per_min:+.2f} ± {self.stderr_mb_per_min:.2f} MB/min"


def fit_slope(samples: Sequence[MemorySample]) -> SlopeFit | None:
    """Least-squares slope with one intercept per segment; None below 3 usable points.

    Segments with a single sample carry no slope information and are left out. The standard
    error assumes independent residuals; memory grows in steps (allocator arenas, GC), so
    treat it as a lower bound on the real uncertainty.
    """
    groups: dict[int, list[MemorySample]] = {}
    for s in samples:
        groups.setdefault(s.segment, []).append(s)
    usable = [g for g in groups.values() if len(g) >= 2]
    n = sum(len(g) for g in usable)
    if n < 3:
        return None
    sxx = sxy = 0.0
    centred: list[tuple[float, float]] = []
    for group in usable:
        mt = sum(s.t for s in group) / len(group)
        my = sum(s.bytes for s in group) / len(group)
        for s in group:
            dt, dy = s.t - mt, (s.bytes - my) / MB
            centred.append((dt, dy))
            sxx += dt * dt
            sxy += dt * dy
    if sxx <= 0:
        return None
    slope = sxy / sxx  # MB per second
    dof = n - len(usable) - 1
    if dof > 0:
        ssr = sum((dy - slope * dt) ** 2 for dt, dy in centred)
        stderr = math.sqrt(ssr / dof / sxx) * 60
    else:
        stderr = math.inf
    return SlopeFit(slope * 60, stderr, n, len(usable))


def minutes_to_limit(last_mb: float, limit_mb: float | None, slope_mb_per_min: float) -> float:
    """Projected minutes until ``limit_mb`` at this slope; inf when it never gets there."""
    if limit_mb is None or limit_mb <= 0 or slope_mb_per_min <= 0:
        return math.inf
    return max(0.0, (limit_mb - last_mb) / slope_mb_per_min)
