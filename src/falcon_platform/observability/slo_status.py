"""Where the service stands against its objectives, and its traffic over the last hour (pure).

Computed from the SLI store's series with the same PromQL arithmetic as the alert evaluator
(:mod:`observability.promql`), so the numbers the console and ``GET /slo`` show are the ones
the burn-rate alerts fire on::

    report = slo_report(spec, requests, buckets, now)       # GET /slo
    chart = traffic(requests, buckets, now, span=3600, step=60)   # GET /traffic

``requests`` are the ``falcon_requests_total`` series (label ``status``), ``buckets`` the
``falcon_request_duration_seconds_bucket`` series (label ``le``), summed over workers here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from falcon_platform.config.spec import Spec, format_duration
from falcon_platform.observability import promql
from falcon_platform.observability.sli_source import Series

LATENCY_WINDOW_S = 300.0


def _is_error(series: Series) -> bool:
    status = series.labels.get("status", "")
    return len(status) == 3 and status.startswith("5")


def request_rates(requests: Sequence[Series], now: float, rng: float) -> tuple[float | None, float]:
    """``sum(rate(requests[rng]))`` (None: no series with two samples) and its 5xx part."""
    total: list[float] = []
    errors: list[float] = []
    for s in requests:
        value = promql.rate(s.samples, now, rng)
        if value is None:
            continue
        total.append(value)
        if _is_error(s):
            errors.append(value)
    return (math.fsum(total) if total else None), math.fsum(errors)


def error_ratio(requests: Sequence[Series], now: float, rng: float) -> float | None:
    """5xx / all over ``rng`` seconds; None without traffic (no ratio, not zero)."""
    total, errors = request_rates(requests, now, rng)
    if total is None or total <= 0:
        return None
    return errors / total


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """Prometheus's ``histogram_quantile``: ``buckets`` are (upper bound, cumulative count),
    linear interpolation inside the bucket, the last finite bound for the +Inf bucket."""
    ordered = sorted(buckets)
    if not ordered or not ordered[-1][1] > 0:
        return None
    rank = q * ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return lower_bound


def _bucket_increases(
    buckets: Sequence[Series], now: float, rng: float
) -> list[tuple[float, float]]:
    """``sum by (le) (increase(bucket[rng]))`` as (le, count) pairs."""
    by_le: dict[float, float] = {}
    for s in buckets:
        try:
            le = float(s.labels.get("le", "nan"))
        except ValueError:
            continue
        if math.isnan(le):
            continue
        value = promql.increase(s.samples, now, rng)
        if value is not None:
            by_le[le] = by_le.get(le, 0.0) + value
    return sorted(by_le.items())


def latency_quantile(
    buckets: Sequence[Series], now: float, q: float, rng: float = LATENCY_WINDOW_S
) -> float | None:
    """The q-quantile of request latency (seconds) over ``rng`` seconds."""
    return histogram_quantile(q, _bucket_increases(buckets, now, rng))


def _good_ratio(buckets: Sequence[Series], now: float, le: float, rng: float) -> float | None:
    pairs = _bucket_increases(buckets, now, rng)
    if not pairs or not pairs[-1][1] > 0:
        return None
    under = [count for bound, count in pairs if bound >= le]
    return (under[0] if under else pairs[-1][1]) / pairs[-1][1]


def _burn(ratio: float | None, budget: float) -> float | None:
    return None if ratio is None else ratio / budget


def slo_report(
    spec: Spec, requests: Sequence[Series], buckets: Sequence[Series], now: float
) -> dict[str, Any]:
    """Objectives, error budget remaining and burn rate per alert window, thresholds marked.

    The budget is measured over the objective's window or the data the store holds, whichever
    is shorter (``measured_s`` says which); a burn rate is the error ratio over a window divided
    by the budget (1 = spending it exactly as fast as the window allows).
    """
    slo = spec.slo
    budget = 1 - slo.availability
    first = min((s.samples[0][0] for s in requests if s.samples), default=None)
    measured = min(slo.window, now - first) if first is not None else 0.0
    ratio = error_ratio(requests, now, measured) if measured > 0 else None
    remaining = None if ratio is None else 1 - ratio / budget
    windows = []
    for burn in spec.alerts.burn_windows:
        long_burn = _burn(error_ratio(requests, now, burn.long), budget)
        short_burn = _burn(error_ratio(requests, now, burn.short), budget)
        over = (
            long_burn is not None
            and short_burn is not None
            and long_burn > burn.factor
            and short_burn > burn.factor
        )
        windows.append(
            {
                "severity": burn.severity,
                "factor": burn.factor,
                "long": format_duration(burn.long),
                "short": format_duration(burn.short),
                "long_burn": long_burn,
                "short_burn": short_burn,
                "over_threshold": over,
            }
        )
    le = slo.latency_p95_ms / 1000
    p95 = latency_quantile(buckets, now, 0.95)
    return {
        "evaluated_at": now,
        "availability": {
            "objective": slo.availability,
            "window": format_duration(slo.window),
            "window_s": slo.window,
            "measured_s": measured,
            "error_ratio": ratio,
            "budget": budget,
            "budget_remaining": remaining,
            "burn_windows": windows,
        },
        "latency": {
            "objective_ms": slo.latency_p95_ms,
            "target": slo.latency_target,
            "window": format_duration(LATENCY_WINDOW_S),
            "p95_ms": None if p95 is None else p95 * 1000,
            "good_ratio": _good_ratio(buckets, now, le, LATENCY_WINDOW_S),
            "met": None if p95 is None else p95 * 1000 <= slo.latency_p95_ms,
        },
    }


def traffic(
    requests: Sequence[Series],
    buckets: Sequence[Series],
    now: float,
    *,
    span: float = 3600.0,
    step: float = 60.0,
) -> dict[str, Any]:
    """Request rate, error ratio and p99 at ``step`` intervals over the last ``span`` seconds
    (each point over the step before it); None where there was no traffic."""
    points = max(1, int(span // step))
    times = [now - step * i for i in range(points - 1, -1, -1)]
    rps: list[float | None] = []
    ratios: list[float | None] = []
    p99: list[float | None] = []
    for t in times:
        total, errors = request_rates(requests, t, step)
        rps.append(total)
        ratios.append(errors / total if total else None)
        q = latency_quantile(buckets, t, 0.99, step)
        p99.append(None if q is None else q * 1000)
    return {"step_s": step, "t": times, "rps": rps, "error_ratio": ratios, "p99_ms": p99}
