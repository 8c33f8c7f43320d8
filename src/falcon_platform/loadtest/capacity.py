"""Capacity: the highest arrival rate at which the SLO still holds, by a bounded search.

Each step is a constant-rate open-model run. The next rate is a pure function of the steps so
far (``next_rate``): double until the SLO breaks (or ``max_rate``), then bisect between the
highest rate that held and the lowest that did not, until they are within ``precision`` or
``max_steps`` runs were made. ``slo_verdict`` is what "holds" means::

    search = find_capacity(url, spec.slo, spec.loadtest.capacity, on_step=print)
    search.capacity_rps, [s.rate for s in search.curve()]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from falcon_platform.config.spec import CapacitySpec, SLOSpec
from falcon_platform.loadtest.plan import LoadPlan
from falcon_platform.loadtest.result import LAG_WARN_MS, LoadResult, Percentiles
from falcon_platform.loadtest.run import LoadOptions, run_load

# Percentiles the result keeps, to read the SLO's latency quantile from (next one up).
_QUANTILES = ((0.5, "p50_ms"), (0.9, "p90_ms"), (0.95, "p95_ms"), (0.99, "p99_ms"),
              (0.999, "p999_ms"))  # fmt: skip


@dataclass(frozen=True, slots=True)
class Step:
    rate: float
    holds: bool
    why: str  # what broke, or "" when it held
    generator_limited: bool
    result: LoadResult

    def to_dict(self) -> dict[str, Any]:
        r = self.result
        return {
            "rate": self.rate,
            "holds": self.holds,
            "why": self.why,
            "generator_limited": self.generator_limited,
            "achieved_rps": round(r.achieved_rps, 2),
            "failure_ratio": failure_ratio(r),
            "latency_ms": r.latency.to_dict(),
            "schedule_lag_p99_ms": r.lag.p99_ms,
        }


def failure_ratio(result: LoadResult) -> float:
    """Errors and dropped requests over everything scheduled (a drop is a failed request)."""
    return (result.errors + result.dropped) / result.scheduled if result.scheduled else 0.0


def latency_quantile_ms(latency: Percentiles, q: float) -> tuple[str, float]:
    """The kept percentile at or above ``q`` (conservative), e.g. 0.95 -> ("p95_ms", ...)."""
    for level, name in _QUANTILES:
        if level >= q - 1e-12:
            return name, float(getattr(latency, name))
    return "p999_ms", latency.p999_ms


def slo_verdict(result: LoadResult, slo: SLOSpec, p99_ms: float | None) -> tuple[bool, str]:
    """Pure: does ``result`` meet the SLO (latency quantile, error ratio, optional p99)?"""
    broken = []
    name, value = latency_quantile_ms(result.latency, slo.latency_target)
    if not value <= slo.latency_p95_ms:  # NaN (no answers) breaks it too
        broken.append(f"{name} {value:.1f} ms > {slo.latency_p95_ms:g} ms")
    ratio = failure_ratio(result)
    if ratio > slo.error_rate:
        broken.append(f"failure ratio {ratio:.4f} > {slo.error_rate:g}")
    if p99_ms is not None and not result.latency.p99_ms <= p99_ms:
        broken.append(f"p99 {result.latency.p99_ms:.1f} ms > {p99_ms:g} ms")
    return not broken, "; ".join(broken)


def next_rate(steps: Sequence[Step], cfg: CapacitySpec) -> float | None:
    """Pure: the next rate to try, or None when the search is done."""
    if not steps:
        return cfg.start_rate
    if len(steps) >= cfg.max_steps or steps[-1].generator_limited:
        return None
    good = [s.rate for s in steps if s.holds]
    lo = max(good) if good else None
    above = [s.rate for s in steps if not s.holds and (lo is None or s.rate > lo)]
    hi = min(above) if above else None
    if hi is None:
        assert lo is not None
        return None if lo >= cfg.max_rate else min(lo * 2, cfg.max_rate)
    if lo is None:
        return hi / 2 if hi / 2 >= 1 else None
    if (hi - lo) / hi <= cfg.precision:
        return None
    return (lo + hi) / 2


@dataclass(frozen=True, slots=True)
class CapacitySearch:
    steps: tuple[Step, ...]
    slo: str  # what "holds" meant, for the report

    @property
    def capacity_rps(self) -> float | None:
        good = [s.rate for s in self.steps if s.holds]
        return max(good) if good else None

    @property
    def generator_limited(self) -> bool:
        return any(s.generator_limited for s in self.steps)

    def curve(self) -> list[Step]:
        """Every step by rate: the latency curve around the knee."""
        return sorted(self.steps, key=lambda s: s.rate)

    def to_dict(self) -> dict[str, Any]:
        return {
            "capacity_rps": self.capacity_rps,
            "slo": self.slo,
            "generator_limited": self.generator_limited,
            "steps": [s.to_dict() for s in self.steps],
            "curve": [s.to_dict() for s in self.curve()],
        }


def describe_slo(slo: SLOSpec, p99_ms: float | None) -> str:
    name, _ = latency_quantile_ms(Percentiles(0, *([0.0] * 7)), slo.latency_target)
    text = f"{name} <= {slo.latency_p95_ms:g} ms and failures <= {slo.error_rate:g}"
    return text + (f" and p99 <= {p99_ms:g} ms" if p99_ms is not None else "")


def find_capacity(
    target: str,
    slo: SLOSpec,
    cfg: CapacitySpec,
    *,
    on_step: Callable[[Step], None] | None = None,
    pause_s: float = 1.0,
) -> CapacitySearch:
    """Run the bounded search against ``target`` (blocking; ``max_steps`` runs at most)."""
    options = LoadOptions(endpoint=cfg.endpoint, texts=cfg.texts, connections=cfg.connections)
    steps: list[Step] = []
    rate = next_rate(steps, cfg)
    while rate is not None:
        result = run_load(LoadPlan.constant(rate, cfg.step_duration), target, options=options)
        holds, why = slo_verdict(result, slo, cfg.p99_ms)
        # The generator's lag adds to every latency; it only matters against the SLO's bound.
        lag_limit = max(LAG_WARN_MS, 0.1 * slo.latency_p95_ms)
        limited = result.lag.p99_ms > lag_limit or result.sent_late > 0.01 * result.scheduled
        if limited:
            why = (why + "; " if why else "") + (
                f"generator lag p99 {result.lag.p99_ms:.1f} ms: the generator, not the server, "
                "is the limit at this rate"
            )
            holds = False
        step = Step(rate, holds, why, limited, result)
        steps.append(step)
        if on_step is not None:
            on_step(step)
        rate = next_rate(steps, cfg)
        if rate is not None:
            time.sleep(pause_s)  # let the server's queues empty between steps
    return CapacitySearch(tuple(steps), describe_slo(slo, cfg.p99_ms))
