"""The canary analysis means what the spec says: its PromQL, run by Prometheus's own engine.

No cluster and no Argo controller here, so each rendered query is run by ``promtool test rules``
(Prometheus's engine) on series of a good and of bad canaries, as Argo would run it: the
template's arguments filled in, evaluated at one instant. promtool checks that the query
returns the value worked out by hand below (or nothing); Argo's decision on that value is then
replayed with the template's own conditions and limits (``testing/argo.py``); and the local
canary judge (``releases.judge.judge_canary``), given the same window as plain numbers, must
fail exactly the checks Argo fails. So a threshold that rendered into the wrong query, the
wrong comparison or the wrong limit, or a cluster judge that drifted from the local one,
fails here.

Series: 15 s scrapes, counters growing by a fixed amount per scrape, so over the 1 m window a
rate is exactly (growth per scrape) / 15 s and ratios are ratios of growths.
"""

from __future__ import annotations

import math
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from falcon_platform.config.settings import Settings
from falcon_platform.config.spec import Spec
from falcon_platform.releases.judge import CanaryLimits, WindowStats, judge_canary
from falcon_platform.render.k8s import K8sOptions, manifests
from falcon_platform.testing.argo import measurement_phase, metric_phase
from falcon_platform.testing.servers import find_binary

pytestmark = pytest.mark.integration

NS, CANARY, STABLE = "falcon-prod", "c4n4ry", "s74b1e"
MIB = 1_048_576
LIMIT = 512 * MIB  # the default spec's workers.memory_limit_mb


def _labels(release: str, pod: str, **extra: str) -> str:
    pairs = {"namespace": NS, "release": release, "pod": pod, "worker": pod, **extra}
    return "{" + ",".join(f'{k}="{v}"' for k, v in pairs.items()) + "}"


def requests(release: str, pod: str, status: str, per_scrape: float) -> dict[str, str]:
    name = "falcon_requests_total" + _labels(release, pod, status=status, endpoint="/infer")
    return {"series": name, "values": f"0+{per_scrape}x40"}


def latency(release: str, pod: str, per_bucket: dict[str, float]) -> list[dict[str, str]]:
    """Cumulative buckets of falcon_request_duration_seconds, each growing per scrape."""
    return [
        {
            "series": "falcon_request_duration_seconds_bucket"
            + _labels(release, pod, le=le, endpoint="/infer"),
            "values": f"0+{n}x40",
        }
        for le, n in per_bucket.items()
    ]


def memory(
    release: str, pod: str, start: int, per_scrape: int = 0, limit: int = LIMIT
) -> list[dict[str, str]]:
    return [
        {
            "series": "falcon_process_resident_memory_bytes" + _labels(release, pod),
            "values": f"{start}+{per_scrape}x40",
        },
        {"series": "falcon_memory_limit_bytes" + _labels(release, pod), "values": f"{limit}x40"},
    ]


# Stable: two pods, 1% errors (1 in 100 per scrape), every request in (0.05 s, 0.1 s]:
# p95 = 0.05 + 0.05 * 0.95 = 0.0975 s (histogram_quantile interpolates linearly in a bucket).
FAST = {"0.05": 0, "0.1": 100, "0.25": 100, "0.5": 100, "1": 100, "+Inf": 100}
SLOW = {"0.05": 0, "0.1": 0, "0.25": 0, "0.5": 50, "1": 50, "+Inf": 50}  # p95 = 0.4875 s
STABLE_SERIES = [
    requests(STABLE, "s1", "200", 50),
    requests(STABLE, "s2", "200", 49),
    requests(STABLE, "s2", "500", 1),
    *latency(STABLE, "s1", FAST),
    *memory(STABLE, "s1", 200 * MIB),
]
# Over the 1 m window (4 scrapes): stable served 400 requests, 4 of them 5xx, p95 97.5 ms.
STABLE_STATS = WindowStats(requests=400, errors=4, p95_ms=97.5, memory_mb=200.0)
STEP_S = 120.0  # the default spec's longest pause: Argo's stand-in for "the step's time left"


def z(k1: int, n1: int, k2: int, n2: int) -> float:
    """One-sided two-proportion z of "canary worse than stable by more than 0.01", pooled
    variance, written out (the judge's test, the default max_error_rate_delta)."""
    pooled = (k1 + k2) / (n1 + n2)
    return (k1 / n1 - k2 / n2 - 0.01) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))


@dataclass(frozen=True)
class Scenario:
    name: str
    canary_series: list[dict[str, str]]
    eval_time: str
    # metric -> (value promtool must return, or None for an empty result; Argo's phase)
    expected: dict[str, tuple[float | None, str]]
    # the same window as the local judge sees it (releases.judge.WindowStats), by hand
    canary: WindowStats
    memory_limit_mb: float = 512


SCENARIOS = [
    Scenario(
        "good: no 5xx, as fast as stable, flat memory",
        [
            requests(CANARY, "c1", "200", 20),
            requests(CANARY, "c2", "200", 20),
            *latency(CANARY, "c1", {k: v / 5 for k, v in FAST.items()}),
            *memory(CANARY, "c1", 200 * MIB),
            *memory(CANARY, "c2", 150 * MIB),
        ],
        "5m",
        {
            "error-ratio": (0.0, "Successful"),  # no 5xx series at all: 0, not nothing
            "error-ratio-delta": (None, "Successful"),  # better than stable
            "latency-p95-ratio": (None, "Successful"),  # p95 97.5 ms: under the 100 ms floor
            "memory-percent": (200 / 512 * 100, "Successful"),  # the worse pod: 39.0625
            "memory-growth": (None, "Successful"),  # flat
        },
        WindowStats(
            requests=160, errors=0, p95_ms=97.5, memory_mb=200.0, memory_slope_mb_per_min=0.0
        ),
    ),
    Scenario(
        "bad: 12% errors, 5x slower, 88% of its memory limit",
        [
            requests(CANARY, "c1", "200", 22),
            requests(CANARY, "c1", "500", 3),
            requests(CANARY, "c2", "200", 22),
            requests(CANARY, "c2", "503", 3),
            *latency(CANARY, "c1", SLOW),
            *memory(CANARY, "c1", 450 * MIB),
        ],
        "5m",
        {
            "error-ratio": (24 / 200, "Failed"),  # above 10%: the seed's rule
            "error-ratio-delta": (z(24, 200, 4, 400), "Failed"),  # z = 5.5
            "latency-p95-ratio": (0.4875 / 0.0975, "Failed"),  # 5.0 > 1.5
            "memory-percent": (450 / 512 * 100, "Failed"),  # 87.89 > 80
            "memory-growth": (None, "Successful"),  # flat: never reaches the limit
        },
        WindowStats(
            requests=200, errors=24, p95_ms=487.5, memory_mb=450.0, memory_slope_mb_per_min=0.0
        ),
    ),
    Scenario(
        "5% errors on 4,000 requests against stable's 1%: significantly worse",
        [requests(CANARY, "c1", "200", 950), requests(CANARY, "c1", "500", 50)],
        "5m",
        {
            "error-ratio": (200 / 4000, "Successful"),  # below the 10% abort
            "error-ratio-delta": (z(200, 4000, 4, 400), "Failed"),  # z = 2.72 > 2.326
        },
        WindowStats(requests=4000, errors=200),
    ),
    Scenario(
        "2.5% errors on 160 requests against stable's 1%: worse, but not significantly",
        [requests(CANARY, "c1", "200", 39), requests(CANARY, "c1", "500", 1)],
        "5m",
        {
            "error-ratio": (4 / 160, "Successful"),
            "error-ratio-delta": (z(4, 160, 4, 400), "Successful"),  # z = 0.45
        },
        WindowStats(requests=160, errors=4),
    ),
    Scenario(
        "too little traffic: 10 requests a minute, half of them 5xx",
        [requests(CANARY, "c1", "200", 1.25), requests(CANARY, "c1", "500", 1.25)],
        "5m",
        {  # 10 requests < abort_min_requests (20) and < min_requests (100): no verdict
            "error-ratio": (None, "Successful"),
            "error-ratio-delta": (None, "Successful"),
            "latency-p95-ratio": (None, "Successful"),
        },
        WindowStats(requests=10, errors=5),
    ),
    Scenario(
        "leak: 80 MB/min from 200 MB, judged after 2 minutes at 360 MB",
        [requests(CANARY, "c1", "200", 30), *memory(CANARY, "c1", 200 * MIB, 20 * MIB)],
        "2m",
        {  # (512 - 360) MB / (80 MB/min) = 114 s to the limit, within the 120 s step
            "memory-percent": (360 / 512 * 100, "Successful"),  # 70.3% < 80%: not yet
            "memory-growth": (114 / 120, "Failed"),  # aborted before the OOM kill
        },
        WindowStats(requests=120, memory_mb=360.0, memory_slope_mb_per_min=80.0),
    ),
    Scenario(
        "steep leak: 120 MB/min at 340 MB of a 1 GiB limit: the limit in 342 s",
        [
            requests(CANARY, "c1", "200", 30),
            *memory(CANARY, "c1", 100 * MIB, 30 * MIB, limit=1024 * MIB),
        ],
        "2m",
        {  # steeper than 100 MB/min: judged over memory_horizon (600 s), not the step
            "memory-percent": (340 / 1024 * 100, "Successful"),
            "memory-growth": (342 / 600, "Failed"),
        },
        WindowStats(requests=120, memory_mb=340.0, memory_slope_mb_per_min=120.0),
        memory_limit_mb=1024,
    ),
    Scenario(
        "gentle growth: 40 MB/min at 400 MB, the limit only after the step; one pod warming up",
        [
            requests(CANARY, "c1", "200", 30),
            *memory(CANARY, "c1", 200 * MIB, 10 * MIB),
            *memory(CANARY, "c2", 200 * MIB, 2 * MIB),  # 240 MB: within 50 MB of stable's
        ],
        "5m",
        {  # (512 - 400) MB / (40 MB/min) = 168 s > 120 s
            "memory-percent": (400 / 512 * 100, "Successful"),  # 78.1%
            "memory-growth": (168 / 120, "Successful"),
        },
        WindowStats(requests=120, memory_mb=400.0, memory_slope_mb_per_min=40.0),
    ),
]
# Argo metric -> the local judge's check of the same rule (releases.judge.judge_canary)
JUDGE_CHECK = {
    "error-ratio": "error_ratio",
    "error-ratio-delta": "error_ratio_vs_stable",
    "latency-p95-ratio": "p95_ratio",
    "memory-percent": "memory_percent",
    "memory-growth": "seconds_to_memory_limit",
}


def rendered() -> dict[str, dict[str, Any]]:
    objs = manifests(
        Spec(),
        Settings.model_construct(profile="prod"),
        K8sOptions(image="registry.example/falcon:0.1.0"),
        "prod",
    )
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == "AnalysisTemplate"}


def fill(query: str, window: str = "1m") -> str:
    """The AnalysisRun's query: Argo substitutes the arguments the Rollout passes."""
    for name, value in (
        ("canary-hash", CANARY),
        ("stable-hash", STABLE),
        ("namespace", NS),
        ("window", window),
    ):
        query = query.replace("{{args.%s}}" % name, value)  # noqa: UP031 - Argo's braces
    assert "{{" not in query, query
    return query


def expr_test(query: str, eval_time: str, value: float | None) -> dict[str, Any]:
    if value is None:
        return {"expr": query, "eval_time": eval_time, "exp_samples": []}
    # 1 when within 1e-9 of the hand-worked value, 0 when not, nothing when no result
    return {
        "expr": f"abs(({query}) - {value!r}) < bool 1e-9",
        "eval_time": eval_time,
        "exp_samples": [{"labels": "{}", "value": 1}],
    }


def run_promtool(tmp_path: Path, tests: list[dict[str, Any]]) -> None:
    (tmp_path / "rules.yml").write_text("groups: []\n")
    (tmp_path / "analysis.test.yml").write_text(
        yaml.safe_dump({"rule_files": ["rules.yml"], "tests": tests}, sort_keys=False)
    )
    done = subprocess.run(
        [find_binary("promtool"), "test", "rules", "analysis.test.yml"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "SUCCESS" in done.stdout


def test_each_judge_query_returns_the_hand_worked_value_and_argo_decides_as_expected(
    tmp_path: Path,
) -> None:
    judge = {m["name"]: m for m in rendered()["falcon-canary"]["spec"]["metrics"]}
    checks_of = {
        sc.name: judge_canary(
            sc.canary,
            STABLE_STATS,
            CanaryLimits.from_spec(Spec().canary, memory_limit_mb=sc.memory_limit_mb),
            step_left_s=STEP_S,
        ).checks
        for sc in SCENARIOS
    }
    tests = []
    covered = set()
    for scenario in SCENARIOS:
        checks = []
        for name, (value, phase) in scenario.expected.items():
            metric = judge[name]
            query = fill(metric["provider"]["prometheus"]["query"])
            checks.append(expr_test(query, scenario.eval_time, value))
            result = [] if value is None else [value]
            got = measurement_phase(None, metric["failureCondition"], result)
            assert got == phase, (scenario.name, name, result)
            # the local judge on the same window fails the same check, or passes it
            local = [c for c in checks_of[scenario.name] if c["check"] == JUDGE_CHECK[name]]
            local_failed = any(c["passed"] is False for c in local)
            assert local_failed == (phase == "Failed"), (scenario.name, name, local)
            if phase == "Failed":  # one failed measurement fails the metric: Argo aborts
                assert metric_phase([got], failure_limit=metric["failureLimit"]) == "Failed"
                covered.add(name)
        tests.append(
            {
                "interval": "15s",
                "input_series": STABLE_SERIES + scenario.canary_series,
                "promql_expr_test": checks,
            }
        )
    assert covered == set(judge), "every judge metric is shown to fail a bad canary"
    run_promtool(tmp_path, tests)


def test_the_step_check_passes_a_busy_canary_and_pauses_on_a_quiet_one(tmp_path: Path) -> None:
    (metric,) = rendered()["falcon-canary-traffic"]["spec"]["metrics"]
    query = metric["provider"]["prometheus"]["query"]
    busy = [requests(CANARY, "c1", "200", 20), requests(CANARY, "c2", "200", 20)]
    quiet = [requests(CANARY, "c1", "200", 2)]
    cases = [  # (series, window the step passes, requests in it by hand, Argo's phase)
        (busy, "1m", 4 * 40.0, "Successful"),
        (busy, "2m", 8 * 40.0, "Successful"),
        (quiet, "1m", 4 * 2.0, "Inconclusive"),  # 8 < 100: the Rollout pauses for a person
        ([], "1m", None, "Inconclusive"),  # no canary series at all
    ]
    tests = []
    for series, window, value, phase in cases:
        tests.append(
            {
                "interval": "15s",
                "input_series": STABLE_SERIES + series,
                "promql_expr_test": [expr_test(fill(query, window), "5m", value)],
            }
        )
        result = [] if value is None else [value]
        got = measurement_phase(metric["successCondition"], metric["failureCondition"], result)
        assert got == phase, (window, value)
        expected_metric = "Inconclusive" if phase == "Inconclusive" else "Running"
        assert metric_phase([got]) == expected_metric
    run_promtool(tmp_path, tests)
