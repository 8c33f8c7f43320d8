"""The Argo Rollout and its AnalysisTemplates: steps and thresholds from the spec's ``canary:``.

Expected values are written out by hand from the spec given (weights, pauses, thresholds),
never read back from the renderer. How Argo judges a measurement is replayed with
``testing/argo.py``, itself checked here against the cases of Argo's own documentation.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from falcon_platform.cli.main import app as cli_app
from falcon_platform.config.settings import Settings
from falcon_platform.config.spec import AlertSpec, CanarySpec, CanaryStep, RestartSpec, Spec
from falcon_platform.errors import ConfigError
from falcon_platform.observability import names as metric_names
from falcon_platform.observability.alert_defs import runbook_url
from falcon_platform.render.k8s import K8sOptions, manifests
from falcon_platform.render.k8s.analysis import CANARY_FIELDS_ON_KUBERNETES, go_duration
from falcon_platform.render.k8s.cluster_rules import cluster_alerts
from falcon_platform.render.k8s.names import Names
from falcon_platform.testing.argo import measurement_phase, metric_phase

OPTIONS = K8sOptions(image="registry.example/falcon:1.2.3")
RUNBOOK = Path(__file__).parents[2] / "docs" / "RUNBOOK.md"
TUNED = CanarySpec(
    steps=[
        CanaryStep(weight=20, pause=30),
        CanaryStep(weight=50, pause=0),
        CanaryStep(weight=100, pause=5400),
    ],
    interval=15,
    abort_error_rate=0.07,
    abort_min_requests=40,
    max_error_rate_delta=0.02,
    max_latency_p95_ratio=1.8,
    latency_floor_ms=250,
    max_memory_percent=75,
    max_memory_slope_mb_per_min=60,
    memory_horizon=1800,
    memory_margin_mb=80,
    min_requests=250,
    inconclusive_timeout=600,
)


def objects(
    canary: CanarySpec | None = None, options: K8sOptions = OPTIONS
) -> dict[str, dict[str, Any]]:
    spec = Spec() if canary is None else Spec(canary=canary)
    rendered = manifests(spec, Settings.model_construct(profile="prod"), options, "prod")
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in rendered}


def metrics(objs: dict[str, dict[str, Any]], template: str) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in objs[f"AnalysisTemplate/{template}"]["spec"]["metrics"]}


def test_canary_steps_make_a_rollout_and_no_steps_a_deployment() -> None:
    kinds = {k.split("/")[0] for k in objects()}
    assert {"Rollout", "AnalysisTemplate"} <= kinds
    assert "Deployment" not in kinds
    for plain in (
        objects(CanarySpec(steps=[])),
        objects(options=K8sOptions(image=OPTIONS.image, rollout=False)),
    ):
        kinds = {k.split("/")[0] for k in plain}
        assert "Deployment" in kinds
        assert not {"Rollout", "AnalysisTemplate"} & kinds
        target = plain["HorizontalPodAutoscaler/falcon"]["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment"


def test_the_release_label_is_the_hash_each_controller_writes() -> None:
    """Argo's ReplicaSets label their pods rollouts-pod-template-hash, not pod-template-hash:
    the worker's release (every metric's label, the analysis's selector) must read that one."""
    for objs, kind, label in (
        (objects(), "Rollout", "rollouts-pod-template-hash"),
        (objects(CanarySpec(steps=[])), "Deployment", "pod-template-hash"),
    ):
        (workload,) = [o for o in objs.values() if o["kind"] == kind]
        pod = workload["spec"]["template"]["spec"]
        (env,) = [e for e in pod["containers"][0]["env"] if e["name"] == "FALCON_RELEASE"]
        assert env["valueFrom"]["fieldRef"]["fieldPath"] == f"metadata.labels['{label}']"
        assert all(c["matchLabelKeys"] == [label] for c in pod["topologySpreadConstraints"])


def test_steps_come_from_the_spec() -> None:
    traffic = {
        "templates": [{"templateName": "falcon-canary-traffic"}],
        "args": [
            {"name": "canary-hash", "valueFrom": {"podTemplateHashValue": "Latest"}},
            {"name": "namespace", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        ],
    }

    def check(window: str) -> dict[str, Any]:
        return {
            "analysis": {**traffic, "args": [*traffic["args"], {"name": "window", "value": window}]}
        }

    steps = objects(TUNED)["Rollout/falcon"]["spec"]["strategy"]["canary"]["steps"]
    assert steps == [
        {"setWeight": 20},
        {"pause": {"duration": "30s"}},
        check("1m"),  # a 30 s pause is judged over the analysis window: a rate needs 2 scrapes
        {"setWeight": 50},
        check("1m"),  # no pause: no pause step
        {"setWeight": 100},
        {"pause": {"duration": "90m"}},
        check("90m"),
    ]
    default = objects()["Rollout/falcon"]["spec"]["strategy"]["canary"]["steps"]
    assert [s for s in default if "setWeight" in s or "pause" in s] == [
        {"setWeight": 10},
        {"pause": {"duration": "1m"}},
        {"setWeight": 25},
        {"pause": {"duration": "1m"}},
        {"setWeight": 50},
        {"pause": {"duration": "2m"}},
    ]
    unguarded = objects(TUNED.model_copy(update={"min_requests": 0}))
    assert "AnalysisTemplate/falcon-canary-traffic" not in unguarded
    assert not [
        s
        for s in unguarded["Rollout/falcon"]["spec"]["strategy"]["canary"]["steps"]
        if "analysis" in s
    ]


def test_go_durations_never_use_days() -> None:
    assert [go_duration(s) for s in (30, 60, 90, 3600, 86400, 1.5)] == [
        "30s", "1m", "90s", "1h", "24h", "1500ms",
    ]  # fmt: skip


def test_the_judges_thresholds_are_the_spec_numbers() -> None:
    """Each threshold of ``canary:`` is the number in its metric's query or condition (the
    numbers of TUNED, written out by hand); the traffic guard (min_requests) gates the
    comparative queries and closes each step."""
    judge = metrics(objects(TUNED), "falcon-canary")
    conditions = {name: m["failureCondition"] for name, m in judge.items()}
    assert conditions == {
        "error-ratio": "len(result) > 0 && result[0] > 0.07",
        "error-ratio-delta": "len(result) > 0 && result[0] > 2.326",  # the judge's z, 1 %
        "latency-p95-ratio": "len(result) > 0 && result[0] > 1.8",
        "memory-percent": "len(result) > 0 && result[0] > 75",
        "memory-growth": "len(result) > 0 && result[0] <= 1",  # seconds left / horizon
    }
    q = {name: m["provider"]["prometheus"]["query"] for name, m in judge.items()}
    assert q["error-ratio"].rstrip().endswith(">= 40)")  # abort_min_requests
    for name in ("error-ratio-delta", "latency-p95-ratio"):
        assert q[name].rstrip().endswith(">= 250)")  # min_requests
    assert " - 0.02)\n/ sqrt(" in q["error-ratio-delta"]  # z of a difference above 0.02
    assert ") > 0.02)\n" in q["error-ratio-delta"]  # and the raw difference above it
    assert "[1m]))) > 0.25)\n" in q["latency-p95-ratio"]  # canary p95 above 250 ms
    # memory: 60 MB/min = 1,048,576 B/MB x 60 / 60 s; steep judged over 1800 s, the rest
    # over the longest pause (5400 s > 1800 s: both 5400); 80 MB above stable = 83,886,080 B
    assert "> 1048576) / 5400)" in q["memory-growth"]
    assert "> 0) / 5400)" in q["memory-growth"]
    assert "> 83886080))" in q["memory-growth"]
    one_step = TUNED.model_copy(update={"steps": [CanaryStep(weight=50, pause=60)]})
    growth = metrics(objects(one_step), "falcon-canary")["memory-growth"]
    query = growth["provider"]["prometheus"]["query"]
    assert "> 1048576) / 1800)" in query  # steep: max(step, memory_horizon)
    assert "> 0) / 60)" in query  # gentle: the step
    for m in judge.values():
        assert m["failureLimit"] == 0  # the first failing measurement aborts
        assert m["interval"] == "15s"  # canary.interval
        assert "successCondition" not in m  # so no data is Successful, never Inconclusive
    (traffic,) = metrics(objects(TUNED), "falcon-canary-traffic").values()
    assert traffic["successCondition"] == "len(result) > 0 && result[0] >= 250"
    assert traffic["failureCondition"] == "false"


def test_every_canary_field_has_a_place_on_kubernetes() -> None:
    """A field added to ``canary:`` (the local judge's) fails here until the cluster's judge
    renders it too, or this table says why it cannot."""
    assert set(CanarySpec.model_fields) == set(CANARY_FIELDS_ON_KUBERNETES)


def test_queries_use_only_the_workers_metrics_and_declared_arguments() -> None:
    objs = objects()
    known = {v for k, v in vars(metric_names).items() if k.isupper() and isinstance(v, str)}
    rollout = objs["Rollout/falcon"]["spec"]["strategy"]["canary"]
    background = {a["name"] for a in rollout["analysis"]["args"]}
    step_args = [
        {a["name"] for a in s["analysis"]["args"]} for s in rollout["steps"] if "analysis" in s
    ]
    for name, given in (("falcon-canary", [background]), ("falcon-canary-traffic", step_args)):
        template = objs[f"AnalysisTemplate/{name}"]["spec"]
        declared = {a["name"] for a in template["args"]}
        for m in template["metrics"]:
            query = m["provider"]["prometheus"]["query"]
            used = set(re.findall(r"\{\{args\.([\w-]+)\}\}", query))
            assert used <= declared, (name, m["name"])
            for series in re.findall(r"\b(falcon_[a-z_]+)\{", query):
                assert series.removesuffix("_bucket") in known, series
        for args in given:  # Argo fails a run whose template argument has no value
            assert declared == args, name


def test_the_prometheus_url_is_an_option_and_checked() -> None:
    objs = objects(options=K8sOptions(image=OPTIONS.image, prometheus_url="https://prom:9091"))
    for m in metrics(objs, "falcon-canary").values():
        assert m["provider"]["prometheus"]["address"] == "https://prom:9091"
    with pytest.raises(ConfigError, match="not an http"):
        objects(options=K8sOptions(image=OPTIONS.image, prometheus_url="prometheus:9090"))


def test_the_cli_renders_a_deployment_on_request(tmp_path: Any) -> None:
    runner = CliRunner()
    done = runner.invoke(cli_app, ["render", "k8s", "--env", "dev", "--deployment"])
    assert done.exit_code == 0, done.output
    assert "kind: Deployment" in done.stdout
    assert "kind: Rollout" not in done.stdout
    done = runner.invoke(
        cli_app, ["render", "k8s", "--env", "dev", "--prometheus-url", "http://p.mon:9090"]
    )
    assert done.exit_code == 0, done.output
    assert "kind: Rollout" in done.stdout
    assert "address: http://p.mon:9090" in done.stdout


# --- the Argo replay itself, against the examples of Argo's docs/features/analysis.md --------


@pytest.mark.parametrize(
    ("success", "failure", "result", "phase"),
    [
        ("result[0] >= 0.95", None, [0.97], "Successful"),
        ("result[0] >= 0.95", None, [0.9], "Failed"),
        (None, "result[0] >= 10", [3.0], "Successful"),
        ("result[0] >= 0.90", "result[0] < 0.50", [0.7], "Inconclusive"),
        ("result[0] >= 0.95", "result[0] < 0.95", [float("nan")], "Inconclusive"),
        ("result[0] >= 0.95", None, [float("nan")], "Failed"),
        ("len(result) == 0 || result[0] >= 0.95", None, [], "Successful"),
        ("len(result) > 0 && result[0] >= 0.95", None, [], "Failed"),
        ("result[0] >= 0.95", None, [], "Error"),  # index out of range: Argo's Error
        (None, None, [0.1], "Successful"),
    ],
)
def test_the_argo_replay_follows_argos_documented_cases(
    success: str | None, failure: str | None, result: list[float], phase: str
) -> None:
    assert measurement_phase(success, failure, result) == phase


def test_the_argo_replay_limits() -> None:
    assert metric_phase(["Successful", "Failed"]) == "Failed"
    assert metric_phase(["Failed", "Successful"], failure_limit=1) == "Running"
    assert metric_phase(["Inconclusive"]) == "Inconclusive"
    assert metric_phase(["Error"] * 4) == "Running"
    assert metric_phase(["Error"] * 5) == "Error"
    with pytest.raises(ValueError, match="unsupported"):
        measurement_phase(None, "os.system('x')", [1.0])


# --- the cluster's own alerts (PrometheusRule <service>-kubernetes) ---------------------------


def test_cluster_alerts_take_their_windows_from_the_spec() -> None:
    """The twins of the supervisor's alerts use the same spec windows; the paused-canary alert
    waits out the longest pause plus inconclusive_timeout (7 m, 20 m, 90 s, 5 m + 5 m)."""
    spec = Spec(
        alerts=AlertSpec(oom_kill_window=420, no_ready_worker_for=90),
        restart=RestartSpec(crash_loop_window=1200),
        canary=CanarySpec(
            steps=[CanaryStep(weight=10, pause=30), CanaryStep(weight=50, pause=300)],
            inconclusive_timeout=300,
        ),
    )
    (rule,) = [
        o
        for o in manifests(spec, Settings.model_construct(profile="prod"), OPTIONS, "prod")
        if o["metadata"]["name"] == "falcon-kubernetes"
    ]
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert "[7m]" in alerts["FalconPodOOMKilled"]["expr"]
    assert "[20m]" in alerts["FalconPodCrashLooping"]["expr"]
    assert alerts["FalconNoAvailablePod"]["for"] == "90s"
    assert alerts["FalconRolloutPaused"]["for"] == "10m"  # 300 s pause + 300 s timeout
    assert "for" not in alerts["FalconRolloutAborted"]  # at once, as the local abort alert
    assert {a: r["labels"]["severity"] for a, r in alerts.items()} == {
        "FalconPodOOMKilled": "critical",
        "FalconPodCrashLooping": "critical",
        "FalconNoAvailablePod": "critical",
        "FalconRolloutAborted": "critical",
        "FalconRolloutPaused": "warning",
    }


def test_every_cluster_alert_has_a_runbook_section() -> None:
    headings = set(re.findall(r"^#{2,4} (Falcon\w+)\s*$", RUNBOOK.read_text(), re.MULTILINE))
    for rollout in (True, False):
        for alert in cluster_alerts(Spec(), Names("falcon"), rollout=rollout):
            assert alert.name in headings, alert.name
            assert runbook_url(alert.name).endswith("#" + alert.name.lower())
