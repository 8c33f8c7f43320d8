"""The canary judge (pure): canary vs stable over the same window -> pass | fail | inconclusive.

Argo Rollouts' analysis semantics (a failed measurement aborts, too little data is
inconclusive, never a pass), Flagger's metric thresholds, Kayenta's idea of comparing canary
with baseline statistically; plus what none of them judges out of the box: memory growth
against the limit, and the model's own answers (label distribution, confidence)::

    limits = CanaryLimits.from_spec(spec.canary, memory_limit_mb=512)
    analysis = judge_canary(canary_stats, stable_stats, limits, step_left_s=20.0)
    analysis.verdict, analysis.reasons, analysis.checks

Every threshold comes from ``spec.canary`` so the Kubernetes AnalysisTemplate can be rendered
from the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from falcon_platform.config.spec import CanarySpec


class Verdict(StrEnum):
    PASS = "pass"  # noqa: S105 - a verdict, not a password
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class WindowStats:
    """One release over the analysis window (from the SLI store, the journal, the request log).

    ``None`` means not measured (no data), never zero."""

    requests: int = 0
    errors: int = 0  # answered 5xx
    p95_ms: float | None = None
    memory_mb: float | None = None  # the largest RSS among its workers, now
    memory_slope_mb_per_min: float | None = None  # the steepest among its workers
    oom_kills: int = 0
    limit_recycles: int = 0
    restarts: int = 0
    labels: Mapping[str, int] = field(default_factory=dict)  # predicted label -> answers
    mean_confidence: float | None = None
    synthetic_requests: int = 0  # of ``requests``: the runner's synthetic ones (canary only)

    @property
    def error_ratio(self) -> float | None:
        return self.errors / self.requests if self.requests > 0 else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_ratio": _round(self.error_ratio),
            "p95_ms": _round(self.p95_ms),
            "memory_mb": _round(self.memory_mb),
            "memory_slope_mb_per_min": _round(self.memory_slope_mb_per_min),
            "oom_kills": self.oom_kills,
            "limit_recycles": self.limit_recycles,
            "restarts": self.restarts,
            "labels": dict(self.labels),
            "mean_confidence": _round(self.mean_confidence),
            "synthetic_requests": self.synthetic_requests,
        }


@dataclass(frozen=True)
class CanaryLimits:
    abort_error_rate: float = 0.10
    abort_min_requests: int = 20
    max_error_rate_delta: float = 0.01
    max_latency_p95_ratio: float = 1.5
    latency_floor_ms: float = 100.0
    max_memory_percent: float = 80.0
    max_memory_slope_mb_per_min: float = 100.0
    memory_horizon_s: float = 600.0
    memory_margin_mb: float = 50.0
    memory_limit_mb: float | None = None
    min_requests: int = 100
    max_label_psi: float = 0.25
    max_confidence_drop: float = 0.15

    @classmethod
    def from_spec(cls, canary: CanarySpec, *, memory_limit_mb: float | None) -> CanaryLimits:
        return cls(
            abort_error_rate=canary.abort_error_rate,
            abort_min_requests=canary.abort_min_requests,
            max_error_rate_delta=canary.max_error_rate_delta,
            max_latency_p95_ratio=canary.max_latency_p95_ratio,
            latency_floor_ms=canary.latency_floor_ms,
            max_memory_percent=canary.max_memory_percent,
            max_memory_slope_mb_per_min=canary.max_memory_slope_mb_per_min,
            memory_horizon_s=canary.memory_horizon,
            memory_margin_mb=canary.memory_margin_mb,
            memory_limit_mb=memory_limit_mb if memory_limit_mb else None,
            min_requests=canary.min_requests,
            max_label_psi=canary.max_label_psi,
            max_confidence_drop=canary.max_confidence_drop,
        )


@dataclass(frozen=True)
class Analysis:
    verdict: Verdict
    reasons: list[str]
    checks: list[dict[str, Any]]
    canary: WindowStats
    stable: WindowStats

    @property
    def failed(self) -> bool:
        return self.verdict is Verdict.FAIL

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": str(self.verdict),
            "reasons": list(self.reasons),
            "checks": list(self.checks),
            "canary": self.canary.to_dict(),
            "stable": self.stable.to_dict(),
        }


def _round(x: float | None, digits: int = 4) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return round(x, digits)


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def one_sided_z(k1: int, n1: int, k2: int, n2: int, delta: float) -> float:
    """z of H1: p1 - p2 > delta (two proportions, pooled variance); 0 when undefined."""
    if n1 <= 0 or n2 <= 0:
        return 0.0
    p1, p2 = k1 / n1, k2 / n2
    pooled = (k1 + k2) / (n1 + n2)
    variance = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    if variance <= 0:
        # no error anywhere, or errors everywhere: the raw difference decides
        return math.inf if p1 - p2 > delta else 0.0
    return (p1 - p2 - delta) / math.sqrt(variance)


def population_stability_index(
    expected: Mapping[str, int], actual: Mapping[str, int], *, smoothing: float = 0.5
) -> float | None:
    """PSI = sum (a - e) ln(a / e) over labels, shares with ``smoothing`` added to every count
    (a label one side never predicted counts without dividing by zero); None when either side
    has no answers. Rule of thumb: < 0.1 same, > 0.25 shifted."""
    e_total, a_total = sum(expected.values()), sum(actual.values())
    if e_total <= 0 or a_total <= 0:
        return None
    labels = set(expected) | set(actual)
    e_n = e_total + smoothing * len(labels)
    a_n = a_total + smoothing * len(labels)
    psi = 0.0
    for label in labels:
        e = (expected.get(label, 0) + smoothing) / e_n
        a = (actual.get(label, 0) + smoothing) / a_n
        psi += (a - e) * math.log(a / e)
    return psi


def chi_square_p(expected: Mapping[str, int], actual: Mapping[str, int]) -> float | None:
    """p-value of a chi-square test that both label counts come from one distribution
    (homogeneity, a 2 x k table); None when it is undefined (one label, or an empty side)."""
    labels = sorted(set(expected) | set(actual))
    rows = [[expected.get(x, 0) for x in labels], [actual.get(x, 0) for x in labels]]
    totals = [sum(r) for r in rows]
    columns = [rows[0][i] + rows[1][i] for i in range(len(labels))]
    grand = sum(totals)
    if len(labels) < 2 or 0 in totals:
        return None
    stat = 0.0
    for r in range(2):
        for i in range(len(labels)):
            want = totals[r] * columns[i] / grand
            if want > 0:
                stat += (rows[r][i] - want) ** 2 / want
    return chi2_sf(stat, len(labels) - 1)


def chi2_sf(x: float, df: int) -> float:
    """P(X >= x) for a chi-square with ``df`` degrees of freedom: the regularized upper gamma
    Q(df/2, x/2) by its closed forms (stdlib only: importing scipy.stats would stall the
    supervisor's loop for a second and cost it ~40 MB)."""
    if x <= 0:
        return 1.0
    y = x / 2.0
    if df % 2 == 0:  # Q(n, y) = e^-y sum_{i<n} y^i / i!
        term, total = 1.0, 1.0
        for i in range(1, df // 2):
            term *= y / i
            total += term
        return min(1.0, math.exp(-y) * total)
    q = math.erfc(math.sqrt(y))  # Q(1/2, y); then Q(a+1, y) = Q(a, y) + y^a e^-y / G(a+1)
    a = 0.5
    while a < df / 2.0:
        q += math.exp(a * math.log(y) - y - math.lgamma(a + 1))
        a += 1.0
    return min(1.0, q)


MAX_LABEL_P = 0.001  # a label shift must be significant, not the noise of a few answers
Z_CRITICAL = 2.326  # one-sided 1 %: a worse canary must be clearly worse, not noise


def judge_canary(
    canary: WindowStats, stable: WindowStats, limits: CanaryLimits, *, step_left_s: float
) -> Analysis:
    """The verdict on one analysis window. Fails first (any failing check fails the window,
    whatever the traffic); then too little traffic is inconclusive; else pass.

    ``step_left_s``: time until the step ends; a memory slope that reaches the limit sooner
    fails now (the canary would be OOM-killed while users are on it)."""
    fails: list[str] = []
    notes: list[str] = []
    checks: list[dict[str, Any]] = []

    def check(name: str, value: Any, limit: Any, passed: bool | None, why: str) -> None:
        checks.append({"check": name, "value": value, "limit": limit, "passed": passed})
        if passed is False:
            fails.append(why)
        elif passed is None:
            notes.append(why)

    # 1. process deaths: any OOM kill (or recycle at the soft limit) of a canary worker
    check("oom_kills", canary.oom_kills, 0, canary.oom_kills == 0,
          f"{canary.oom_kills} canary worker(s) OOM-killed")  # fmt: skip
    check("limit_recycles", canary.limit_recycles, 0, canary.limit_recycles == 0,
          f"{canary.limit_recycles} canary worker(s) recycled at the soft memory limit")  # fmt: skip

    # 2. memory: share of the limit now, and the projected time to the limit
    limit = limits.memory_limit_mb
    memory = _finite(canary.memory_mb)
    if limit is not None and memory is not None:
        percent = 100.0 * memory / limit
        check("memory_percent", round(percent, 1), limits.max_memory_percent,
              percent <= limits.max_memory_percent,
              f"canary memory {memory:.0f} MB is {percent:.0f}% of its {limit:.0f} MB limit "
              f"(> {limits.max_memory_percent:g}%)")  # fmt: skip
        slope = _finite(canary.memory_slope_mb_per_min)
        # A fresh worker grows for a while (caches, allocator arenas): a slope counts only once
        # the canary holds more than stable's memory plus a margin, and still grows.
        baseline = _finite(stable.memory_mb) or 0.0
        excess = memory - baseline
        if slope is not None and slope > 0 and excess > limits.memory_margin_mb:
            seconds = max(0.0, (limit - memory) / slope * 60.0)
            # a steep leak is judged over the horizon, a slow growth only over the step
            steep = slope > limits.max_memory_slope_mb_per_min
            horizon = max(step_left_s, limits.memory_horizon_s) if steep else step_left_s
            check("seconds_to_memory_limit", round(seconds, 1), round(horizon, 1),
                  seconds > horizon,
                  f"canary memory {memory:.0f} MB ({excess:.0f} MB above stable's) grows "
                  f"{slope:.0f} MB/min: the {limit:.0f} MB limit in {seconds:.0f} s "
                  f"(within {horizon:.0f} s)")  # fmt: skip

    # 3. errors: above the abort threshold aborts at once (with a few requests seen)
    ratio = canary.error_ratio
    if ratio is not None and canary.requests >= limits.abort_min_requests:
        check("error_ratio", round(ratio, 4), limits.abort_error_rate,
              ratio <= limits.abort_error_rate,
              f"canary error ratio {ratio:.1%} ({canary.errors}/{canary.requests}) > abort "
              f"threshold {limits.abort_error_rate:.0%}")  # fmt: skip

    enough = canary.requests >= limits.min_requests
    if not enough:
        check("requests", canary.requests, limits.min_requests, None,
              f"too little canary traffic for a verdict: {canary.requests} requests < "
              f"{limits.min_requests}; waiting")  # fmt: skip
    stable_ratio = stable.error_ratio
    if enough and ratio is not None and stable_ratio is not None:
        z = one_sided_z(canary.errors, canary.requests, stable.errors, stable.requests,
                        limits.max_error_rate_delta)  # fmt: skip
        worse = ratio - stable_ratio
        check("error_ratio_vs_stable", round(worse, 4), limits.max_error_rate_delta,
              not (worse > limits.max_error_rate_delta and z > Z_CRITICAL),
              f"canary errors {ratio:.2%} vs stable {stable_ratio:.2%}: worse by more than "
              f"{limits.max_error_rate_delta:.2%} (z={z:.1f})")  # fmt: skip

    # 4. latency: p95 ratio, once the canary is slow enough to matter
    cp95, sp95 = _finite(canary.p95_ms), _finite(stable.p95_ms)
    if enough and cp95 is not None and sp95 is not None and sp95 > 0:
        latency_ratio = cp95 / sp95
        check("p95_ratio", round(latency_ratio, 2), limits.max_latency_p95_ratio,
              latency_ratio <= limits.max_latency_p95_ratio or cp95 <= limits.latency_floor_ms,
              f"canary p95 {cp95:.0f} ms is {latency_ratio:.1f}x stable's {sp95:.0f} ms "
              f"(> {limits.max_latency_p95_ratio:g}x)")  # fmt: skip

    # 5. the model's answers: label distribution and confidence, compared with stable's
    answered = sum(canary.labels.values())
    if answered >= limits.min_requests and sum(stable.labels.values()) >= limits.min_requests:
        psi = population_stability_index(stable.labels, canary.labels)
        p = chi_square_p(stable.labels, canary.labels)
        if psi is not None:
            shifted = psi > limits.max_label_psi and (p is None or p < MAX_LABEL_P)
            check("label_psi", round(psi, 3), limits.max_label_psi, not shifted,
                  f"canary's predicted labels shifted from stable's (PSI {psi:.2f} > "
                  f"{limits.max_label_psi:g}, chi-square p={p if p is not None else float('nan'):.1g}): "
                  f"{dict(canary.labels)} vs {dict(stable.labels)}")  # fmt: skip
    cconf, sconf = _finite(canary.mean_confidence), _finite(stable.mean_confidence)
    if answered >= limits.min_requests and cconf is not None and sconf is not None:
        drop = sconf - cconf
        check("confidence_drop", round(drop, 3), limits.max_confidence_drop,
              drop <= limits.max_confidence_drop,
              f"canary's mean confidence {cconf:.2f} vs stable's {sconf:.2f} "
              f"(dropped by more than {limits.max_confidence_drop:g})")  # fmt: skip

    if fails:
        return Analysis(Verdict.FAIL, fails, checks, canary, stable)
    if notes:
        return Analysis(Verdict.INCONCLUSIVE, notes, checks, canary, stable)
    return Analysis(Verdict.PASS, ["every check passed"], checks, canary, stable)
