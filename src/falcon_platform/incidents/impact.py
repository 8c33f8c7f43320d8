"""An incident's impact computed from the request log (pure): what the seed estimated by hand.

A request failed if it was answered 5xx (errors, the supervisor's 503 while no worker was
ready, shed 503s, 504 time-outs) or got no answer at all (in flight in a worker that was
killed: estimated from the supervisor's last scrape of that worker's in-flight gauge)::

    impact = compute_impact(rows, window=(start, end), baseline=baseline_rows, slo=spec.slo,
                            unanswered=estimate_unanswered(deaths), slo_window_requests=n)
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

from falcon_platform.config.spec import SLOSpec


class RequestRow(NamedTuple):
    ts: float
    worker: str
    release: str
    status_code: int
    latency_ms: float
    client_id: str | None


@dataclass(frozen=True, slots=True)
class Unanswered:
    """Requests in flight in a worker when it was killed: no answer, no request-log row."""

    worker: str
    release: str | None
    died_at: float
    in_flight: int  # the worker's in-flight gauge at its last scrape before death
    scraped_at: float | None
    bound: int  # +/- : requests that can start or finish between that scrape and the death


@dataclass(frozen=True, slots=True)
class SloRow:
    name: str
    target: str
    actual: str
    breach: bool


@dataclass(frozen=True, slots=True)
class Impact:
    window_start: float
    window_end: float
    requests: int
    answered_ok: int
    failed: int  # answered 5xx + unanswered
    answered_5xx: int
    unanswered: int
    unanswered_bound: int
    by_status: dict[str, int]
    timeouts: int
    shed: int  # 503s (no worker ready, overloaded)
    error_rate: float
    clients: int
    clients_affected: int
    p95_ms: float
    p99_ms: float
    baseline_requests: int
    baseline_error_rate: float
    baseline_p99_ms: float
    per_release: dict[str, dict[str, int]]
    per_worker: dict[str, dict[str, int]]
    slo: list[SloRow]
    budget_allowed: float  # failures the SLO window allows
    budget_consumed: float  # share of that spent by this incident
    unanswered_detail: list[Unanswered] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return self.window_end - self.window_start

    @property
    def clients_share(self) -> float:
        return self.clients_affected / self.clients if self.clients else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["duration_s"] = self.duration_s
        data["clients_share"] = self.clients_share
        return data


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[rank - 1])


def is_failure(status: int) -> bool:
    return status >= 500


LITTLE_WINDOW_S = 5.0


def estimate_unanswered(
    deaths: Sequence[tuple[str, str | None, float]],
    inflight: dict[str, list[tuple[float, float]]],
    rows: Sequence[RequestRow],
    *,
    window_s: float = LITTLE_WINDOW_S,
) -> list[Unanswered]:
    """Requests in flight in each worker at its abnormal death (worker, release, ts).

    Two independent measures: Little's law over the ``window_s`` before the death (that
    worker's arrival rate in the request log x its mean latency), and the worker's in-flight
    gauge at the supervisor's last scrape before it. The estimate is Little's (the gauge
    is up to a scrape interval old); the error bound is their disagreement, at least 1.
    Without request-log rows the gauge alone is used, bound 1."""
    found: list[Unanswered] = []
    for worker, release, died_at in deaths:
        samples = [(t, v) for t, v in inflight.get(worker, []) if t <= died_at]
        last = max(samples, default=None)
        gauge = last[1] if last else 0.0
        recent = [r for r in rows if r.worker == worker and died_at - window_s <= r.ts < died_at]
        if recent:
            rate = len(recent) / window_s
            mean_s = sum(r.latency_ms for r in recent) / len(recent) / 1000
            little = rate * mean_s
            estimate, bound = round(little), max(1, math.ceil(abs(little - gauge)))
        else:
            estimate, bound = round(gauge), 1
        found.append(
            Unanswered(worker, release, died_at, estimate, last[0] if last else None, bound)
        )
    return found


def compute_impact(
    rows: Sequence[RequestRow],
    *,
    window: tuple[float, float],
    baseline: Sequence[RequestRow] = (),
    slo: SLOSpec,
    unanswered: Sequence[Unanswered] = (),
    slo_window_requests: int = 0,
) -> Impact:
    start, end = window
    inside = [r for r in rows if start <= r.ts <= end]
    n_unanswered = sum(u.in_flight for u in unanswered)
    failed_rows = [r for r in inside if is_failure(r.status_code)]
    requests = len(inside) + n_unanswered
    failed = len(failed_rows) + n_unanswered
    statuses = Counter(str(r.status_code) for r in inside)
    latencies = [r.latency_ms for r in inside]
    clients = {r.client_id for r in inside if r.client_id}
    hit = {r.client_id for r in failed_rows if r.client_id}
    per_release: dict[str, Counter[str]] = {}
    per_worker: dict[str, Counter[str]] = {}
    for r in inside:
        for table, key in ((per_release, r.release), (per_worker, r.worker)):
            c = table.setdefault(key, Counter())
            c["requests"] += 1
            c["failed"] += int(is_failure(r.status_code))
    for u in unanswered:
        if u.in_flight:
            c = per_worker.setdefault(u.worker, Counter())
            c["requests"] += u.in_flight
            c["failed"] += u.in_flight
            c["unanswered"] += u.in_flight
            rc = per_release.setdefault(u.release or "?", Counter())
            rc["requests"] += u.in_flight
            rc["failed"] += u.in_flight
    base_failed = sum(1 for r in baseline if is_failure(r.status_code))
    error_rate = failed / requests if requests else 0.0
    p95 = percentile(latencies, 95)
    p99 = percentile(latencies, 99)
    availability = 1 - error_rate
    allowed = (1 - slo.availability) * max(slo_window_requests, requests)
    slo_rows = [
        SloRow(
            "Availability",
            f"{slo.availability:.3%}",
            f"{availability:.3%}",
            availability < slo.availability,
        ),
        SloRow(
            f"p{slo.latency_target * 100:g} latency",
            f"< {slo.latency_p95_ms:g} ms",
            f"{percentile(latencies, slo.latency_target * 100):.0f} ms",
            percentile(latencies, slo.latency_target * 100) > slo.latency_p95_ms,
        ),
        SloRow("p99 latency", "-", f"{p99:.0f} ms", False),
        SloRow(
            "Error rate",
            f"< {slo.error_rate:.2%}",
            f"{error_rate:.2%}",
            error_rate > slo.error_rate,
        ),
    ]
    return Impact(
        window_start=start,
        window_end=end,
        requests=requests,
        answered_ok=len(inside) - len(failed_rows),
        failed=failed,
        answered_5xx=len(failed_rows),
        unanswered=n_unanswered,
        unanswered_bound=sum(u.bound for u in unanswered),
        by_status=dict(sorted(statuses.items())),
        timeouts=statuses.get("504", 0),
        shed=statuses.get("503", 0),
        error_rate=error_rate,
        clients=len(clients),
        clients_affected=len(hit),
        p95_ms=p95,
        p99_ms=p99,
        baseline_requests=len(baseline),
        baseline_error_rate=base_failed / len(baseline) if baseline else 0.0,
        baseline_p99_ms=percentile([r.latency_ms for r in baseline], 99),
        per_release={k: dict(v) for k, v in sorted(per_release.items())},
        per_worker={k: dict(v) for k, v in sorted(per_worker.items())},
        slo=slo_rows,
        budget_allowed=allowed,
        budget_consumed=failed / allowed if allowed else 0.0,
        unanswered_detail=list(unanswered),
    )
