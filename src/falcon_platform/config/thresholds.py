"""Load-test threshold syntax: ``"p99_ms < 50"``, ``"error_ratio <= 0.01"`` (k6-like).

The syntax lives here, beside the spec that holds thresholds, so ``falcon config check``
refuses a misspelt metric before any load runs; ``loadtest.thresholds`` evaluates them::

    parse_threshold("p99_ms < 50")   # Threshold(metric="p99_ms", op="<", limit=50.0, ...)
    parse_threshold("p99 < 50")      # ValueError: unknown metric 'p99'; did you mean 'p99_ms'? ...
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass

# metric -> what it means (shown by `falcon loadtest metrics` and in error messages)
METRICS: dict[str, str] = {
    "p50_ms": "median latency from each request's scheduled start (ms)",
    "p90_ms": "90th percentile latency (ms)",
    "p95_ms": "95th percentile latency (ms)",
    "p99_ms": "99th percentile latency (ms)",
    "p999_ms": "99.9th percentile latency (ms)",
    "max_ms": "largest latency (ms)",
    "mean_ms": "mean latency (ms)",
    "requests": "requests sent",
    "error_ratio": "non-2xx responses, connection errors and time-outs / requests sent",
    "errors": "non-2xx responses + connection errors + time-outs (count)",
    "timeouts": "requests with no answer within the time-out (count)",
    "connection_errors": "connections refused, reset or closed mid-request (count)",
    "dropped_ratio": "requests not sent because every connection was busy / requests scheduled",
    "dropped": "requests not sent because every connection was busy (count)",
    "achieved_rate_ratio": "requests sent in the planned window / requests scheduled in it",
    "achieved_rps": "requests sent per second of the planned window",
    "schedule_lag_p99_ms": "generator's own lag behind its schedule, 99th percentile (ms)",
    "memory_slope_mb_per_min": "steepest worker memory slope, least squares (MB/min)",
    "time_to_memory_limit_min": "soonest projected time for a worker to reach its limit (min)",
    "memory_max_mb": "largest worker memory sample (MB)",
    "restarts": "worker restarts during the run",
    "oom_kills": "workers OOM-killed during the run",
    "shed_requests": "requests the workers refused as overloaded (503) during the run",
    "queue_depth_max": "largest micro-batcher queue depth sampled",
}

OPERATORS = ("<=", ">=", "==", "<", ">")
_PATTERN = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|==|<|>)\s*(\S+)\s*$")


@dataclass(frozen=True, slots=True)
class Threshold:
    """One parsed threshold; ``text`` is the normalised form (``"p99_ms < 50"``)."""

    metric: str
    op: str
    limit: float

    @property
    def text(self) -> str:
        return f"{self.metric} {self.op} {self.limit:g}"

    def holds(self, value: float) -> bool:
        """Pure comparison; ``inf`` is a valid value (e.g. a memory that never reaches its limit)."""
        if math.isnan(value):
            return False
        if self.op == "<":
            return value < self.limit
        if self.op == "<=":
            return value <= self.limit
        if self.op == ">":
            return value > self.limit
        if self.op == ">=":
            return value >= self.limit
        return value == self.limit


def parse_threshold(text: str) -> Threshold:
    """``"p99_ms < 50"`` -> Threshold; ValueError naming what is wrong and the accepted form."""
    match = _PATTERN.match(text)
    if not match:
        raise ValueError(
            f"invalid threshold {text!r}: write '<metric> <op> <number>', e.g. 'p99_ms < 50' "
            f"(operators: {', '.join(OPERATORS)})"
        )
    metric, op, raw = match.groups()
    if metric not in METRICS:
        close = difflib.get_close_matches(metric, list(METRICS), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(
            f"unknown metric {metric!r} in threshold {text!r}; {hint}known metrics: "
            f"{', '.join(METRICS)}"
        )
    try:
        limit = float(raw)
    except ValueError:
        raise ValueError(
            f"invalid number {raw!r} in threshold {text!r}: write e.g. 'p99_ms < 50'"
        ) from None
    if math.isnan(limit):
        raise ValueError(f"threshold {text!r} compares with NaN, which nothing satisfies")
    return Threshold(metric, op, limit)
