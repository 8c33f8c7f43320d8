"""A run's result: plain data that serialises to JSON, and the metrics thresholds read.

Built once at the end of a run from the recorder and the server samples (``build_result``);
``LoadResult.metrics()`` is the one mapping thresholds, the CLI and the capacity search read::

    result.latency.p99_ms, result.error_ratio, result.server.workers[0].fit
    result.metrics()["memory_slope_mb_per_min"]
    json.dumps(result.to_dict())
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from hdrh.histogram import HdrHistogram

from falcon_platform.loadtest.plan import LoadPlan
from falcon_platform.loadtest.recorder import Recorder, SecondBucket
from falcon_platform.loadtest.server import ServerSide
from falcon_platform.loadtest.thresholds import Verdict, evaluate

# The generator's lag p99 above which its latencies are not trusted (warning + field).
LAG_WARN_MS = 2.0


@dataclass(frozen=True, slots=True)
class Percentiles:
    count: int
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    mean_ms: float

    @classmethod
    def of(cls, hist: HdrHistogram) -> Percentiles:
        n = hist.get_total_count()
        if n == 0:
            return cls(0, *([math.nan] * 7))

        def ms(p: float) -> float:
            return float(hist.get_value_at_percentile(p)) / 1000

        return cls(n, ms(50), ms(90), ms(95), ms(99), ms(99.9),
                   hist.get_max_value() / 1000, hist.get_mean_value() / 1000)  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        values = {name: getattr(self, name) for name in self.__dataclass_fields__}
        return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in values.items()}


@dataclass(frozen=True, slots=True)
class Second:
    """Requests scheduled in second ``t`` and what became of them."""

    t: int
    target: float  # arrivals the plan scheduled in this second
    scheduled: int
    sent: int
    dropped: int
    ok: int
    errors: int
    timeouts: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None

    @classmethod
    def of(cls, t: int, bucket: SecondBucket, target: float) -> Second:
        lat = sorted(bucket.latencies_ms)

        def pct(p: float) -> float | None:
            return lat[min(len(lat) - 1, math.ceil(p * len(lat)) - 1)] if lat else None

        return cls(t, round(target, 3), bucket.scheduled, bucket.sent, bucket.dropped, bucket.ok,
                   bucket.errors, bucket.timeouts, pct(0.5), pct(0.99),
                   lat[-1] if lat else None)  # fmt: skip


@dataclass(frozen=True, slots=True)
class LoadResult:
    target: str
    model: str  # "open" (arrival rate) or "closed" (users waiting for answers)
    endpoint: str
    texts: str
    connections: int
    planned_s: float
    elapsed_s: float
    started_at: float  # wall clock (UTC epoch seconds)
    scheduled: int
    sent: int
    sent_late: int
    dropped: int
    responses: int
    statuses: dict[int, int]
    transport_errors: dict[str, int]
    latency: Percentiles  # from the scheduled start (coordinated omission corrected)
    service: Percentiles  # from the actual send
    lag: Percentiles  # the generator's own lag behind its schedule
    series: tuple[Second, ...]
    server: ServerSide
    stages: tuple[tuple[float, float], ...] = ()
    start_rate: float = 0.0
    aborted: bool = False
    warnings: tuple[str, ...] = ()
    verdicts: tuple[Verdict, ...] = field(default=())

    # --- derived -------------------------------------------------------------------------
    @property
    def errors(self) -> int:
        bad = sum(n for code, n in self.statuses.items() if not 200 <= code < 300)
        return bad + sum(self.transport_errors.values())

    @property
    def error_ratio(self) -> float:
        return self.errors / self.sent if self.sent else 0.0

    @property
    def dropped_ratio(self) -> float:
        return self.dropped / self.scheduled if self.scheduled else 0.0

    @property
    def target_rps(self) -> float:
        return self.scheduled / self.planned_s if self.planned_s else 0.0

    @property
    def achieved_rps(self) -> float:
        """Requests actually sent within the planned window, per second of it."""
        return (self.sent - self.sent_late) / self.planned_s if self.planned_s else 0.0

    @property
    def achieved_rate_ratio(self) -> float:
        return (self.sent - self.sent_late) / self.scheduled if self.scheduled else 0.0

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.verdicts)

    @property
    def failed(self) -> list[Verdict]:
        return [v for v in self.verdicts if not v.passed]

    def metrics(self) -> dict[str, float | None]:
        """Every value a threshold can name (``config.thresholds.METRICS``)."""
        lat, side = self.latency, self.server
        has = side.reachable

        def nan_none(x: float) -> float | None:
            return None if math.isnan(x) else x

        return {
            "p50_ms": nan_none(lat.p50_ms),
            "p90_ms": nan_none(lat.p90_ms),
            "p95_ms": nan_none(lat.p95_ms),
            "p99_ms": nan_none(lat.p99_ms),
            "p999_ms": nan_none(lat.p999_ms),
            "max_ms": nan_none(lat.max_ms),
            "mean_ms": nan_none(lat.mean_ms),
            "requests": float(self.sent),
            "error_ratio": self.error_ratio,
            "errors": float(self.errors),
            "timeouts": float(self.transport_errors.get("timeout", 0)),
            "connection_errors": float(
                sum(n for k, n in self.transport_errors.items() if k != "timeout")
            ),
            "dropped_ratio": self.dropped_ratio,
            "dropped": float(self.dropped),
            "achieved_rate_ratio": self.achieved_rate_ratio,
            "achieved_rps": self.achieved_rps,
            "schedule_lag_p99_ms": nan_none(self.lag.p99_ms),
            "memory_slope_mb_per_min": side.steepest_slope if has else None,
            "time_to_memory_limit_min": side.time_to_limit_min if has else None,
            "memory_max_mb": side.memory_max_mb if has else None,
            "restarts": float(side.restarts) if has else None,
            "oom_kills": float(side.oom_kills) if has else None,
            "shed_requests": float(side.shed_requests) if has else None,
            "queue_depth_max": side.queue_depth_max if has else None,
        }

    def missing_reasons(self) -> dict[str, str]:
        why = self.server.why or "no server-side samples"
        server_metrics = ("memory_slope_mb_per_min", "time_to_memory_limit_min", "memory_max_mb",
                          "restarts", "oom_kills", "shed_requests", "queue_depth_max")  # fmt: skip
        reasons = dict.fromkeys(server_metrics, why) if not self.server.reachable else {}
        if self.server.reachable:
            reasons.update(
                dict.fromkeys(
                    ("memory_slope_mb_per_min", "time_to_memory_limit_min"),
                    "fewer than 3 memory samples: run longer or sample more often",
                )
            )
        reasons.update(dict.fromkeys(("p50_ms", "p99_ms", "max_ms"), "no response at all"))
        return reasons

    def judged(self, thresholds: list[str]) -> LoadResult:
        """This result with every threshold judged (pure)."""
        verdicts = evaluate(thresholds, self.metrics(), self.missing_reasons())
        return replace(self, verdicts=tuple(verdicts))

    def to_dict(self) -> dict[str, Any]:
        side = self.server
        return {
            "passed": self.passed,
            "target": self.target,
            "model": self.model,
            "endpoint": self.endpoint,
            "texts": self.texts,
            "connections": self.connections,
            "stages": [{"duration_s": d, "rate": r} for d, r in self.stages],
            "start_rate": self.start_rate,
            "planned_s": self.planned_s,
            "elapsed_s": round(self.elapsed_s, 3),
            "started_at": self.started_at,
            "aborted": self.aborted,
            "requests": {
                "scheduled": self.scheduled,
                "sent": self.sent,
                "sent_late": self.sent_late,
                "dropped": self.dropped,
                "responses": self.responses,
                "errors": self.errors,
            },
            "rate": {
                "target_rps": round(self.target_rps, 3),
                "achieved_rps": round(self.achieved_rps, 3),
                "achieved_ratio": round(self.achieved_rate_ratio, 5),
            },
            "error_ratio": self.error_ratio,
            "dropped_ratio": self.dropped_ratio,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "transport_errors": dict(self.transport_errors),
            "latency_ms": self.latency.to_dict(),
            "service_time_ms": self.service.to_dict(),
            "schedule_lag_ms": self.lag.to_dict(),
            "warnings": list(self.warnings),
            "thresholds": [v.to_dict() for v in self.verdicts],
            "server": _server_dict(side),
            "series": [
                {name: getattr(s, name) for name in Second.__dataclass_fields__}
                for s in self.series
            ],
        }


def _finite(x: float) -> float | None:
    return None if math.isinf(x) or math.isnan(x) else x


def _server_dict(side: ServerSide) -> dict[str, Any]:
    return {
        "reachable": side.reachable,
        "why": side.why,
        "samples": side.samples,
        "restarts": side.restarts,
        "oom_kills": side.oom_kills,
        "shed_requests": side.shed_requests,
        "queue_depth_max": side.queue_depth_max,
        "workers": [
            {
                "worker": w.worker,
                "memory_slope_mb_per_min": w.fit.slope_mb_per_min if w.fit else None,
                "memory_slope_stderr_mb_per_min": _finite(w.fit.stderr_mb_per_min)
                if w.fit
                else None,
                "fit_points": w.fit.points if w.fit else 0,
                "fit_segments": w.fit.segments if w.fit else 0,
                "limit_mb": w.limit_mb,
                "last_mb": w.last_mb,
                "max_mb": w.max_mb,
                "time_to_limit_min": _finite(w.time_to_limit_min),
                "reaches_limit": not math.isinf(w.time_to_limit_min),
                "restarts": w.restarts,
                "oom_kills": w.oom_kills,
                "memory_mb": [[round(t, 3), round(mb, 3)] for t, mb in w.samples],
            }
            for w in side.workers
        ],
        "series": [[round(t, 3), q, s] for t, q, s in side.series],
    }


def build_result(
    rec: Recorder,
    plan: LoadPlan,
    server: ServerSide,
    *,
    target: str,
    model: str,
    endpoint: str,
    texts: str,
    connections: int,
    elapsed_s: float,
    started_at: float,
    aborted: bool,
    extra_warnings: tuple[str, ...] = (),
) -> LoadResult:
    """Freeze the recorder into a result (pure over its tallies)."""
    planned = plan.duration_s
    if math.isinf(planned):  # open-ended: what actually ran
        planned = elapsed_s
    series = tuple(
        Second.of(
            t,
            bucket,
            plan.expected_arrivals(min(t + 1, planned)) - plan.expected_arrivals(t)
            if not plan.until_stopped
            else plan.stages[0].rate,
        )
        for t, bucket in enumerate(rec.seconds)
    )
    lag = Percentiles.of(rec.lag)
    warnings = list(extra_warnings)
    if lag.count and lag.p99_ms > LAG_WARN_MS:
        warnings.append(
            f"the generator fell behind its schedule (lag p99 {lag.p99_ms:.1f} ms > "
            f"{LAG_WARN_MS:g} ms): latencies include its own delay; give it a free core "
            "(taskset) or lower the rate"
        )
    if rec.n_sent_late:
        warnings.append(
            f"{rec.n_sent_late} requests were sent after the planned end (generator too slow)"
        )
    if rec.n_dropped:
        warnings.append(
            f"{rec.n_dropped} requests dropped: all {connections} connections were busy "
            "(the server is slower than the arrival rate; raise --connections to queue more)"
        )
    return LoadResult(
        target=target,
        model=model,
        endpoint=endpoint,
        texts=texts,
        connections=connections,
        planned_s=planned,
        elapsed_s=elapsed_s,
        started_at=started_at,
        scheduled=rec.n_scheduled,
        sent=rec.n_sent,
        sent_late=rec.n_sent_late,
        dropped=rec.n_dropped,
        responses=rec.responses,
        statuses=dict(rec.statuses),
        transport_errors={k: v for k, v in rec.transport_errors.items() if v},
        latency=Percentiles.of(rec.latency),
        service=Percentiles.of(rec.service),
        lag=lag,
        series=series,
        server=server,
        stages=tuple((s.duration_s, s.rate) for s in plan.stages),
        start_rate=plan.initial_rate,
        aborted=aborted,
        warnings=tuple(warnings),
    )
