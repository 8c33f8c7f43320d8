"""Threshold verdicts (pure): every threshold with its measured value, pass or fail.

The syntax is ``config.thresholds`` (so the spec refuses a misspelt metric); this module
judges a run's metrics against them::

    verdicts = evaluate(["p99_ms < 50", "error_ratio < 0.01"], {"p99_ms": 12.5, "error_ratio": 0})
    [v.line() for v in verdicts if not v.passed]

A metric with no value (e.g. memory when the control API was not reachable) *fails* its
threshold: a gate that could not measure something must not pass it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from falcon_platform.config.thresholds import Threshold, parse_threshold


@dataclass(frozen=True, slots=True)
class Verdict:
    threshold: str  # normalised text, e.g. "p99_ms < 50"
    metric: str
    op: str
    limit: float
    value: float | None  # None: not measured in this run
    passed: bool
    why: str = ""  # for a missing value: why it is missing

    def shown(self) -> str:
        if self.value is None:
            return f"no data ({self.why})" if self.why else "no data"
        if math.isinf(self.value):
            return "never" if self.value > 0 else "-inf"
        return f"{self.value:.6g}"

    def line(self) -> str:
        mark = "ok  " if self.passed else "FAIL"
        return f"{mark} {self.threshold}  (measured {self.shown()})"

    def to_dict(self) -> dict[str, Any]:
        value = self.value
        return {
            "threshold": self.threshold,
            "metric": self.metric,
            "op": self.op,
            "limit": self.limit,
            # JSON has no infinity: null with "shown": "never" (e.g. memory never reaches its limit)
            "value": None if value is None or math.isinf(value) else value,
            "shown": self.shown(),
            "passed": self.passed,
        }


def evaluate(
    thresholds: Iterable[str | Threshold],
    metrics: Mapping[str, float | None],
    missing: Mapping[str, str] | None = None,
) -> list[Verdict]:
    """Judge every threshold; ``missing`` maps a metric to why it has no value."""
    verdicts = []
    for item in thresholds:
        t = parse_threshold(item) if isinstance(item, str) else item
        value = metrics.get(t.metric)
        passed = value is not None and t.holds(value)
        why = (missing or {}).get(t.metric, "") if value is None else ""
        verdicts.append(Verdict(t.text, t.metric, t.op, t.limit, value, passed, why))
    return verdicts
