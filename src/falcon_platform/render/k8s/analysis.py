"""The canary judge as Argo ``AnalysisTemplate`` objects: the spec's ``canary:`` thresholds.

Every number here comes from ``spec.canary``, the fields the local judge
(``releases.judge.judge_canary``) reads, and each query follows that judge's rule: abort above
``abort_error_rate`` once ``abort_min_requests`` were seen; worse than stable by more than
``max_error_rate_delta`` *and* significantly so (its one-sided z-test, ``Z_CRITICAL``); p95
ratio only above ``latency_floor_ms``; memory share of the limit; memory growth that reaches
the limit within the step (within ``memory_horizon`` when steeper than
``max_memory_slope_mb_per_min``) once ``memory_margin_mb`` above stable. Metric names come
from ``observability.names``; nothing is retyped.

Argo Rollouts takes one measurement per metric every ``canary.interval``; a measurement is
*Failed* when its ``failureCondition`` holds, else *Successful* (no ``successCondition``:
Argo's rule). A metric is Failed once its failures exceed ``failureLimit`` (0 here: the first
failed measurement aborts, as one failing verdict of the local judge does), and an aborted
Rollout scales the canary down and the stable ReplicaSet back up.

- ``<service>-canary`` runs in the background through every step: each query compares the
  canary's pods (``release`` = their ``rollouts-pod-template-hash``) with the stable ones over
  the last ``ANALYSIS_WINDOW_S`` (the local judge: since the step began). A comparative query
  returns nothing while the canary has served fewer than ``min_requests`` requests in that
  window, and an empty result fails nothing: no verdict from too little traffic, as locally.
- ``<service>-canary-traffic`` closes each step: did the canary serve ``min_requests``
  requests during the step's pause? Too few is *Inconclusive* (``failureCondition: "false"``):
  the Rollout pauses and says so, for a person to ``promote`` or ``abort`` (the local rollout
  aborts after ``inconclusive_timeout``; here ``FalconRolloutPaused`` fires then).

What the cluster cannot judge: predicted labels and confidences (the request log has them, no
Prometheus metric does) and OOM kills of canary pods (``FalconPodOOMKilled`` alerts on them).

    >>> from falcon_platform.config.spec import Spec
    >>> [m.name for m in judge_metrics(Spec().canary, [60.0, 60.0, 120.0])]
    ['error-ratio', 'error-ratio-delta', 'latency-p95-ratio', 'memory-percent', 'memory-growth']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from falcon_platform.config.spec import CanarySpec, format_duration
from falcon_platform.observability import names as m
from falcon_platform.observability.conditions import ERROR_STATUS_REGEX, number
from falcon_platform.releases.judge import Z_CRITICAL
from falcon_platform.render.k8s import options as o
from falcon_platform.render.k8s.names import Names

API_VERSION = "argoproj.io/v1alpha1"
# Template arguments: the Rollout fills them in (hashes of its ReplicaSets, its namespace).
CANARY_HASH = "canary-hash"
STABLE_HASH = "stable-hash"
NAMESPACE = "namespace"
WINDOW = "window"  # canary-traffic: the step's pause
MIB = 1_048_576  # the judge's MB (releases/window.py)

# Where each field of ``canary:`` ends up on Kubernetes; a test fails when the spec grows a
# field that is not listed here, so the cluster's judge cannot silently fall behind.
CANARY_FIELDS_ON_KUBERNETES: Mapping[str, str] = {
    "steps": "Rollout strategy.canary.steps: setWeight, pause, then the canary-traffic check",
    "interval": "every <service>-canary metric's interval",
    "abort_error_rate": "<service>-canary error-ratio",
    "abort_min_requests": "<service>-canary error-ratio: no sample below it",
    "max_error_rate_delta": "<service>-canary error-ratio-delta (z-test, as the judge)",
    "max_latency_p95_ratio": "<service>-canary latency-p95-ratio",
    "latency_floor_ms": "<service>-canary latency-p95-ratio: no sample while the canary's p95 "
    "is under it",
    "max_memory_percent": "<service>-canary memory-percent",
    "max_memory_slope_mb_per_min": "<service>-canary memory-growth: steeper is judged over "
    "memory_horizon",
    "memory_horizon": "<service>-canary memory-growth",
    "memory_margin_mb": "<service>-canary memory-growth: only pods this far above stable",
    "min_requests": "<service>-canary error-ratio-delta and latency-p95-ratio, and "
    "<service>-canary-traffic at the end of each step",
    "max_label_psi": "NOT on Kubernetes: predicted labels are in the request log, not in a "
    "Prometheus metric",
    "max_confidence_drop": "NOT on Kubernetes: confidences are in the request log, not in a "
    "Prometheus metric",
    "synthetic_rps": "NOT on Kubernetes: the supervisor sends it to the canary workers' "
    "private admin sockets; a cluster would use Flagger's load-test webhook or an Argo "
    "analysis Job, whose requests Prometheus could not tell from users'",
    "synthetic_max_duration": "NOT on Kubernetes: see synthetic_rps",
    "inconclusive_timeout": "FalconRolloutPaused fires after the longest pause plus this (Argo "
    "pauses an Inconclusive step for a person instead of aborting it)",
}


@dataclass(frozen=True)
class JudgeMetric:
    """One Argo metric: a PromQL query whose first sample is compared with a threshold."""

    name: str
    query: str
    failure_condition: str
    field: str  # the CanarySpec field (or fields) the threshold comes from


def go_duration(seconds: float) -> str:
    """A duration as Argo parses it (Go's ``time.ParseDuration``: no ``d`` or ``w``), which
    PromQL reads too: 86400.0 -> ``"24h"``, 90.0 -> ``"90s"``."""
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{round(seconds * 1000)}ms"


def _arg(name: str) -> str:
    return "{{args.%s}}" % name  # noqa: UP031 - Argo's placeholder, braces and all


def selector(release_arg: str, *extra: str) -> str:
    """Series of one ReplicaSet's pods: the worker's ``release`` label is its pod-template hash."""
    matchers = [f'{NAMESPACE}="{_arg(NAMESPACE)}"', f'release="{_arg(release_arg)}"', *extra]
    return "{" + ",".join(matchers) + "}"


def _requests(release_arg: str, window: str) -> str:
    return f"sum(increase({m.REQUESTS}{selector(release_arg)}[{window}]))"


def _error_ratio(release_arg: str, window: str) -> str:
    """5xx over all requests; ``or vector(0)``: no 5xx series yet is a ratio of 0, not nothing."""
    errors = selector(release_arg, f'status=~"{ERROR_STATUS_REGEX}"')
    return (
        f"((sum(rate({m.REQUESTS}{errors}[{window}])) or vector(0))\n"
        f" / sum(rate({m.REQUESTS}{selector(release_arg)}[{window}])))"
    )


def _p95(release_arg: str, window: str) -> str:
    buckets = f"{m.REQUEST_DURATION}_bucket{selector(release_arg)}"
    return f"histogram_quantile(0.95, sum by (le) (rate({buckets}[{window}])))"


def _fails_above(threshold: float) -> str:
    """Failed when the query returned a sample above ``threshold``; an empty result (too
    little traffic, no data) and NaN (0/0) fail nothing."""
    return f"len(result) > 0 && result[0] > {number(threshold)}"


def _fails_at_most(threshold: float) -> str:
    return f"len(result) > 0 && result[0] <= {number(threshold)}"


def _count(release_arg: str, window: str, *extra: str) -> str:
    return f"sum(increase({m.REQUESTS}{selector(release_arg, *extra)}[{window}]))"


def _z_score(delta: float, window: str) -> str:
    """``releases.judge.one_sided_z`` in PromQL: z of "canary's error ratio exceeds stable's by
    more than ``delta``", two proportions with pooled variance. Zero variance divides by zero:
    +Inf when the canary is worse by more than delta (fails), -Inf or NaN otherwise (passes),
    as the judge's own special case decides."""
    err = f'status=~"{ERROR_STATUS_REGEX}"'
    k1, n1 = f"({_count(CANARY_HASH, window, err)} or vector(0))", _count(CANARY_HASH, window)
    k2, n2 = f"({_count(STABLE_HASH, window, err)} or vector(0))", _count(STABLE_HASH, window)
    pooled = f"(({k1} + {k2}) / ({n1} + {n2}))"
    return (
        f"(({k1} / {n1}) - ({k2} / {n2}) - {number(delta)})\n"
        f"/ sqrt({pooled} * (1 - {pooled}) * (1 / {n1} + 1 / {n2}))"
    )


def _memory_growth(canary: CanarySpec, window: str, step_s: float) -> str:
    """Seconds until the worst canary pod reaches its limit, over the horizon it is judged on
    (``releases.judge``: a slope steeper than ``max_memory_slope_mb_per_min`` over
    max(step, ``memory_horizon``), a gentler one over the step), for pods whose RSS grows and
    exceeds stable's largest by ``memory_margin_mb``; at most 1 = OOM-killed in time."""
    rss = f"{m.RSS}{selector(CANARY_HASH)}"
    stable_rss = f"(max({m.RSS}{selector(STABLE_HASH)}) or vector(0))"
    headroom = f"(({m.MEMORY_LIMIT}{selector(CANARY_HASH)} > 0) - {rss})"
    slope = f"deriv({rss}[{window}])"  # bytes/s, least squares as the judge's fit
    steep = canary.max_memory_slope_mb_per_min * MIB / 60
    steep_horizon = max(step_s, canary.memory_horizon)
    return (
        f"min((\n  ({headroom} / ({slope} > {number(steep)}) / {number(steep_horizon)})\n"
        f"  or ({headroom} / ({slope} > 0) / {number(step_s)})\n)"
        f" and ({rss} - on() group_left() {stable_rss} > {number(canary.memory_margin_mb * MIB)}))"
    )


def judge_metrics(canary: CanarySpec, pauses: Sequence[float]) -> list[JudgeMetric]:
    """The background analysis: canary against stable, thresholds from ``canary``.

    ``pauses``: the steps' pauses (seconds). The local judge knows how long the current step
    has left; Argo's background analysis does not, so the longest pause stands for it."""
    w = format_duration(o.ANALYSIS_WINDOW_S)
    enough = f"\nand on() ({_requests(CANARY_HASH, w)} >= {canary.min_requests})"
    rss = f"{m.RSS}{selector(CANARY_HASH)}"
    limit = f"({m.MEMORY_LIMIT}{selector(CANARY_HASH)} > 0)"
    step_s = max([*pauses, canary.interval])
    worse = f"({_error_ratio(CANARY_HASH, w)}\n - {_error_ratio(STABLE_HASH, w)})"
    return [
        JudgeMetric(
            "error-ratio",
            _error_ratio(CANARY_HASH, w)
            + f"\nand on() ({_requests(CANARY_HASH, w)} >= {canary.abort_min_requests})",
            _fails_above(canary.abort_error_rate),
            "abort_error_rate, abort_min_requests",
        ),
        JudgeMetric(
            # worse than stable by more than the margin, and significantly so (one-sided z)
            "error-ratio-delta",
            f"({_z_score(canary.max_error_rate_delta, w)})\n"
            f"and on() ({worse} > {number(canary.max_error_rate_delta)})" + enough,
            _fails_above(Z_CRITICAL),
            "max_error_rate_delta, min_requests",
        ),
        JudgeMetric(
            "latency-p95-ratio",
            f"({_p95(CANARY_HASH, w)}\n / {_p95(STABLE_HASH, w)})"
            f"\nand on() ({_p95(CANARY_HASH, w)} > {number(canary.latency_floor_ms / 1000)})"
            + enough,
            _fails_above(canary.max_latency_p95_ratio),
            "max_latency_p95_ratio, latency_floor_ms, min_requests",
        ),
        JudgeMetric(
            # The worst canary pod; no traffic guard, as the judge: memory is not a sample.
            "memory-percent",
            f"100 * max({rss} / {limit})",
            _fails_above(canary.max_memory_percent),
            "max_memory_percent",
        ),
        JudgeMetric(
            "memory-growth",
            _memory_growth(canary, w, step_s),
            _fails_at_most(1.0),
            "max_memory_slope_mb_per_min, memory_horizon, memory_margin_mb",
        ),
    ]


def _args(*names_: str) -> list[dict[str, str]]:
    return [{"name": n} for n in names_]


def _metric(metric: JudgeMetric, prometheus_url: str, interval: float) -> dict[str, Any]:
    return {
        "name": metric.name,
        "interval": go_duration(interval),
        "failureCondition": metric.failure_condition,
        "failureLimit": 0,
        "provider": {"prometheus": {"address": prometheus_url, "query": metric.query}},
    }


def canary_analysis(
    canary: CanarySpec, names: Names, options: o.K8sOptions, pauses: Sequence[float]
) -> dict[str, Any]:
    """``<service>-canary``: the judge, run in the background through the canary steps."""
    return {
        "apiVersion": API_VERSION,
        "kind": "AnalysisTemplate",
        "metadata": {"name": names.canary_analysis, "labels": names.labels("server")},
        "spec": {
            "args": _args(CANARY_HASH, STABLE_HASH, NAMESPACE),
            "metrics": [
                _metric(j, options.prometheus_url, canary.interval)
                for j in judge_metrics(canary, pauses)
            ],
        },
    }


def traffic_query() -> str:
    return _requests(CANARY_HASH, _arg(WINDOW))


def traffic_success(canary: CanarySpec) -> str:
    return f"len(result) > 0 && result[0] >= {canary.min_requests}"


def canary_traffic(canary: CanarySpec, names: Names, options: o.K8sOptions) -> dict[str, Any]:
    """``<service>-canary-traffic``: one measurement at the end of a step; too few requests
    is Inconclusive (neither condition holds), which pauses the Rollout for a person."""
    return {
        "apiVersion": API_VERSION,
        "kind": "AnalysisTemplate",
        "metadata": {"name": names.canary_traffic, "labels": names.labels("server")},
        "spec": {
            "args": _args(CANARY_HASH, NAMESPACE, WINDOW),
            "metrics": [
                {
                    "name": "canary-requests",
                    "successCondition": traffic_success(canary),
                    "failureCondition": "false",
                    "provider": {
                        "prometheus": {
                            "address": options.prometheus_url,
                            "query": traffic_query(),
                        }
                    },
                }
            ],
        },
    }
