"""The canary analysis means what the spec says: its PromQL, run by Prometheus's own engine.

No cluster and no Argo controller here, so each rendered query is run by ``promtool test rules``
(Prometheus's engine) on series of a good and of bad canaries, as Argo would run it: the
template's arguments filled in, evaluated at one instant. promtool checks that the query
returns the value worked out by hand below (or nothing); Argo's decision on that value is then
replayed with the template's own conditions and limits (``testing/argo.py``). So a threshold
that rendered into the wrong query, the wrong comparison or the wrong limit fails here.

Series: 15 s scrapes, counters growing by a fixed amount per scrape, so over the 1 m window a
rate is exactly (growth per scrape) / 15 s and ratios are ratios of growths.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from falcon_platform.config.settings import Settings
from falcon_platform.config.spec import Spec
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


def memory(release: str, pod: str, start: int, per_scrape: int = 0) -> list[dict[str, str]]:
    return [
        {
            "series": "falcon_process_resident_memory_bytes" + _labels(release, pod),
            "values": f"{start}+{per_scrape}x40",
        },
        {"series": "falcon_memory_limit_bytes" + _labels(release, pod), "values": f"{LIMIT}x40"},
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


@dataclass(frozen=True)
class Scenario:
    name: str
    canary_series: list[dict[str, str]]
    eval_time: str
    # metric -> (value promtool must return, or None for an empty result; Argo's phase)
    expected: dict[str, tuple[float | None, str]]


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
            "error-ratio-delta": (0.0 - 0.01, "Successful"),
            "latency-p95-ratio": (1.0, "Successful"),
            "memory-percent": (200 / 512 * 100, "Successful"),  # the worse pod: 39.0625
            "memory-growth": (200 / 512, "Successful"),
        },
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
            "error-ratio": (6 / 50, "Failed"),  # above 10%: the seed's rule
            "error-ratio-delta": (6 / 50 - 0.01, "Failed"),
            "latency-p95-ratio": (0.4875 / 0.0975, "Failed"),  # 5.0 > 1.5
            "memory-percent": (450 / 512 * 100, "Failed"),  # 87.89 > 80
            "memory-growth": (450 / 512, "Successful"),  # flat: never reaches the limit
        },
    ),
    Scenario(
        "subtle: 2.5% errors against stable's 1%",
        [requests(CANARY, "c1", "200", 39), requests(CANARY, "c1", "500", 1)],
        "5m",
        {
            "error-ratio": (1 / 40, "Successful"),  # below the 10% abort
            "error-ratio-delta": (1 / 40 - 0.01, "Failed"),  # 0.015 > 0.01
        },
    ),
    Scenario(
        "too little traffic: 10 requests a minute, half of them 5xx",
        [requests(CANARY, "c1", "200", 1.25), requests(CANARY, "c1", "500", 1.25)],
        "5m",
        {  # 4 scrapes x 2.5 = 10 requests in the window < min_requests (100): no verdict
            "error-ratio": (None, "Successful"),
            "error-ratio-delta": (None, "Successful"),
            "latency-p95-ratio": (None, "Successful"),
        },
    ),
    Scenario(
        "leak: 20 MiB per scrape from 200 MiB, judged after 2 minutes at 360 MiB",
        [requests(CANARY, "c1", "200", 30), *memory(CANARY, "c1", 200 * MIB, 20 * MIB)],
        "2m",
        {  # 360 MiB + (20 MiB / 15 s) x 120 s (the longest default pause) = 520 MiB > 512 MiB
            "memory-percent": (360 / 512 * 100, "Successful"),  # 70.3% < 80%: not yet
            "memory-growth": (520 / 512, "Failed"),  # aborted before the OOM kill
        },
    ),
]


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
