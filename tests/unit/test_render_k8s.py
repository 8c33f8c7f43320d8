"""`falcon render k8s`: the rendered objects mean what the worker, the gate and the alerts mean.

Expected values come from hand arithmetic, from the worker's own code (its routes, its
argument parser, its memory and disk-budget arithmetic) or from the gate, never from the
renderer under test.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from falcon_platform.cli.main import app as cli_app
from falcon_platform.config.machine import MachineFacts
from falcon_platform.config.memory import memory_limits
from falcon_platform.config.policy import evaluate_policy
from falcon_platform.config.settings import SECRET_FIELDS, Settings
from falcon_platform.config.spec import AlertSpec, ProbeSpec, Spec, WorkerSpec
from falcon_platform.config.specfile import parse_spec_text
from falcon_platform.errors import ConfigError
from falcon_platform.render.grafana import render_dashboard
from falcon_platform.render.k8s import K8sOptions, manifests, render_layout
from falcon_platform.render.k8s.settings_env import field_name
from falcon_platform.render.prometheus import render_rules
from falcon_platform.serving.app import create_admin_app, create_app
from falcon_platform.stores.request_log import disk_budget_share
from falcon_platform.worker.main import parse_args

IMAGE = "registry.example/falcon:1.2.3"
OPTIONS = K8sOptions(image=IMAGE)
SECRETS = {
    "admin_token": "tok-3c1f9a7e5b2d4c6e8a0f",
    "database_url": "postgresql://falcon:pg-9d8c7b6a5e4f3a2b@db.internal:5432/falcon",
    "redis_url": "redis://:rd-1a2b3c4d5e6f7a8b@redis.internal:6379/0",
}
MI = 1_048_576


def settings(profile: str = "prod", **values: Any) -> Settings:
    """Settings as the CLI would load them for ``profile``, without reading this environment."""
    return Settings.model_construct(profile=profile, **values)


def objects(
    spec: Spec | None = None, env: str = "prod", s: Settings | None = None
) -> dict[str, dict[str, Any]]:
    rendered = manifests(spec or Spec(), s or settings(env), OPTIONS, env)
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in rendered}


def by_kind(objs: dict[str, dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs.values() if o["kind"] == kind]


def workload(objs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The object that runs the serving pods: a Rollout (the spec has canary steps) or a
    Deployment."""
    (found,) = by_kind(objs, "Rollout") + by_kind(objs, "Deployment")
    return found


def container(objs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (c,) = workload(objs)["spec"]["template"]["spec"]["containers"]
    return c


def pod_settings(objs: dict[str, dict[str, Any]], **extra: Any) -> Settings:
    """The Settings a serving pod's worker builds from its ConfigMap (validated, strict)."""
    data = objs["ConfigMap/falcon-settings"]["data"]
    values: dict[str, Any] = {field_name(k): v for k, v in data.items()}
    args = parse_args(container(objs)["args"])
    values.update(host=args.host, port=args.port, **extra)
    return Settings.model_validate(values)


def mib(quantity: str) -> int:
    """A Kubernetes quantity in Mi or Gi, in bytes (only the forms these manifests use)."""
    units = {"Mi": MI, "Gi": 1024 * MI}
    return int(quantity[:-2]) * units[quantity[-2:]]


def test_each_environment_renders_the_objects_of_the_issue() -> None:
    expected = {
        "Namespace/falcon-prod",
        "ServiceAccount/falcon",
        "ConfigMap/falcon-settings",
        "ConfigMap/falcon-spec",
        "ConfigMap/falcon-dashboard",
        "Rollout/falcon",
        "AnalysisTemplate/falcon-canary",
        "AnalysisTemplate/falcon-canary-traffic",
        "Service/falcon",
        "HorizontalPodAutoscaler/falcon",
        "PodDisruptionBudget/falcon",
        "NetworkPolicy/falcon",
        "NetworkPolicy/falcon-db-upgrade",
        "ServiceMonitor/falcon",
        "PrometheusRule/falcon",
        "PrometheusRule/falcon-kubernetes",
    }
    objs = objects()
    jobs = {k for k in objs if k.startswith("Job/falcon-db-upgrade-")}
    assert set(objs) - jobs == expected
    assert len(jobs) == 1
    assert all(
        o["metadata"]["namespace"] == "falcon-prod"
        for o in objs.values()
        if o["kind"] != "Namespace"
    )
    assert not by_kind(objs, "Secret"), "secrets are referenced, never rendered"


def test_memory_limit_soft_limit_and_alert_thresholds_agree() -> None:
    """Container limit = the limit the worker exports = the alerts' denominator; the soft
    limit and the alert threshold both sit below it (512 MiB, 80%: hand arithmetic)."""
    objs = objects()
    limits = container(objs)["resources"]["limits"]
    assert mib(limits["memory"]) == 512 * MI == 536_870_912
    assert container(objs)["resources"]["requests"]["memory"] == limits["memory"]
    s = pod_settings(objs)
    worker = memory_limits(512, 80, s.memory_limit_mb, s.memory_soft_limit_percent)
    assert worker.limit_bytes == 536_870_912
    assert worker.soft_bytes == 429_496_729  # 80% of 536,870,912, rounded down
    rules = yaml.safe_load(render_rules(Spec()))["groups"]
    (high,) = [r for g in rules for r in g["rules"] if r.get("alert") == "FalconWorkerMemoryHigh"]
    assert high["expr"].rstrip().endswith("> 0.8")

    tuned = Spec(
        workers=WorkerSpec(memory_limit_mb=768, memory_soft_limit_percent=70),
        alerts=AlertSpec(memory_percent=90),
    )
    objs = objects(tuned)
    assert container(objs)["resources"]["limits"]["memory"] == "768Mi"
    s = pod_settings(objs)
    worker = memory_limits(768, 70, s.memory_limit_mb, s.memory_soft_limit_percent)
    assert (worker.limit_bytes, worker.soft_bytes) == (805_306_368, 563_714_457)
    rules = objs["PrometheusRule/falcon"]["spec"]["groups"]
    (high,) = [r for g in rules for r in g["rules"] if r.get("alert") == "FalconWorkerMemoryHigh"]
    assert high["expr"].rstrip().endswith("> 0.9")


def test_an_environment_override_of_the_memory_limit_reaches_the_container() -> None:
    objs = objects(s=settings("prod", memory_limit_mb=1024))
    assert container(objs)["resources"]["limits"]["memory"] == "1024Mi"
    assert pod_settings(objs).memory_limit_mb == 1024


async def test_probe_paths_and_ports_are_the_apps_real_routes() -> None:
    """Asked of the worker's apps themselves (public and admin, no lifespan: a worker that is
    still starting): liveness answers 200, readiness 503 until the model is warm, and an
    unknown path is a 404 — so a probe on a path the app lacks would fail here."""
    app = create_app(Settings.model_construct())
    answers: dict[str, dict[str, int]] = {}
    for name, asgi in (("public", app), ("admin", create_admin_app(app))):
        transport = httpx.ASGITransport(app=asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://pod") as client:
            answers[name] = {
                p: (await client.get(p)).status_code for p in ("/healthz", "/readyz", "/nope")
            }
    assert answers["public"] == answers["admin"] == {"/healthz": 200, "/readyz": 503, "/nope": 404}
    c = container(objects())
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    args = parse_args(c["args"])  # the worker's own parser accepts the rendered command
    assert c["command"] == ["python", "-m", "falcon_platform.worker"]
    assert args.fd is None
    assert args.host == "0.0.0.0"
    for probe, path in (
        ("readinessProbe", "/readyz"),
        ("livenessProbe", "/healthz"),
        ("startupProbe", "/healthz"),
    ):
        get = c[probe]["httpGet"]
        assert get["path"] == path
        assert ports[get["port"]] == args.port == 8000
        assert get["scheme"] == "HTTPS"  # the worker serves TLS: its settings name the files
    s = pod_settings(objects())
    assert s.tls_certfile is not None
    assert s.tls_keyfile is not None


def test_startup_probe_waits_as_long_as_the_supervisor_would() -> None:
    for spec_probes, threshold in (
        (ProbeSpec(), 60),
        (ProbeSpec(period=5, startup_timeout=301), 61),
    ):
        c = container(objects(Spec(probes=spec_probes)))
        startup = c["startupProbe"]
        assert startup["failureThreshold"] == threshold
        assert startup["periodSeconds"] * startup["failureThreshold"] >= spec_probes.startup_timeout
        assert c["livenessProbe"]["failureThreshold"] == spec_probes.failure_threshold


def test_the_drain_fits_in_the_grace_period() -> None:
    """Defaults: 5 s preStop + ceil(0.5 settle + 30 in-flight + 5 batcher + 30 shipping) + 5."""
    objs = objects()
    pod = workload(objs)["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 5 + 66 + 5
    assert container(objs)["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}
    s = pod_settings(objs)
    assert s.shutdown_grace_s == 30
    short = objects(s=settings("prod", shutdown_grace_s=4.0, inference_timeout_ms=1500))
    pod = workload(short)["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 5 + math.ceil(0.5 + 4 + 1.5 + 4) + 5


def test_security_context_and_every_path_the_worker_writes_is_a_volume() -> None:
    objs = objects()
    pod = workload(objs)["spec"]["template"]["spec"]
    c = container(objs)
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert objs["ServiceAccount/falcon"]["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False  # else FALCON_PORT=tcp://... from the Service
    volumes = {v["name"]: v for v in pod["volumes"]}
    writable = {
        m["mountPath"]: m["name"]
        for m in c["volumeMounts"]
        if not m.get("readOnly") and "emptyDir" in volumes[m["name"]]
    }
    s = pod_settings(objs)
    # tempfile.gettempdir() is /tmp when TMPDIR is unset, as it is in the pod
    for path in (s.run_dir, s.data_dir, s.spool_dir, Path(tempfile.gettempdir())):
        covering = [m for m in writable if str(path).startswith(m)]
        assert covering, f"{path} is on the read-only root file system"


def test_the_spool_volume_holds_the_workers_whole_disk_budget() -> None:
    for budget in (1024, 100):
        objs = objects(s=settings("prod", request_log_disk_budget_mb=budget))
        pod = workload(objs)["spec"]["template"]["spec"]
        (spool,) = [v for v in pod["volumes"] if v["name"] == "spool"]
        s = pod_settings(objs)
        share = disk_budget_share(s)  # the worker's own arithmetic: one worker per pod
        assert share == budget * MI
        assert mib(spool["emptyDir"]["sizeLimit"]) > share  # 503 before the kubelet evicts
        (mount,) = [m for m in container(objs)["volumeMounts"] if m["name"] == "spool"]
        assert mount["mountPath"] == str(s.spool_dir)


def test_the_configmap_holds_valid_settings_and_the_spec_round_trips() -> None:
    spec = Spec(workers=WorkerSpec(memory_limit_mb=640), alerts=AlertSpec(memory_for=120))
    objs = objects(spec, s=settings("prod", max_batch_items=128, log_level="WARNING"))
    s = pod_settings(objs)
    assert (s.profile, s.workers, s.max_batch_items, s.log_level) == ("prod", 1, 128, "WARNING")
    text = objs["ConfigMap/falcon-spec"]["data"]["falcon.yaml"]
    parsed, problems = parse_spec_text(text)
    assert problems == []
    assert parsed == spec
    assert str(s.spec_path).endswith("/falcon.yaml")


def test_secrets_are_references_and_no_value_reaches_the_output() -> None:
    envs = {e: settings(e, **SECRETS) for e in ("dev", "staging", "prod")}
    files = render_layout(Spec(), envs, OPTIONS)
    text = "\n".join(files.values())
    for value in SECRETS.values():
        assert value not in text
    for fragment in ("tok-3c1f9a7e5b2d4c6e8a0f", "pg-9d8c7b6a5e4f", "rd-1a2b3c4d5e6f"):
        assert fragment not in text
    env = {e["name"]: e for e in container(objects())["env"]}
    for field in SECRET_FIELDS:
        ref = env[f"FALCON_{field.upper()}"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "falcon-secrets", "key": f"FALCON_{field.upper()}", "optional": True}


def test_the_prod_pod_passes_the_prod_gate_with_real_secrets() -> None:
    """What `python -m falcon_platform.worker` judges at start in the pod: its settings, its
    container's memory (the cgroup limit), one worker. No violation at all."""
    for env in ("dev", "staging", "prod"):
        objs = objects(env=env)
        s = pod_settings(objs, **SECRETS)
        memory = mib(container(objs)["resources"]["limits"]["memory"]) // MI
        pod = MachineFacts(memory, 16, "cgroup limit", cgroup_limited=True)
        found = evaluate_policy(s, Spec(), pod, allow_faults=False, workers=1)
        assert [v.line() for v in found] == []


def test_the_rules_and_dashboard_are_those_of_the_other_renderers() -> None:
    spec = Spec(alerts=AlertSpec(error_rate_critical=0.05))
    objs = objects(spec)
    rule_file = yaml.safe_load(render_rules(spec))
    assert objs["PrometheusRule/falcon"]["spec"] == {"groups": rule_file["groups"]}
    dashboard = objs["ConfigMap/falcon-dashboard"]
    assert dashboard["data"] == {"falcon-dashboard.json": render_dashboard(spec)}
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_selectors_and_targets_find_the_serving_pods() -> None:
    objs = objects()
    serving = workload(objs)
    labels = serving["spec"]["template"]["metadata"]["labels"]
    assert _selects(serving["spec"]["selector"]["matchLabels"], labels)
    assert _selects(objs["Service/falcon"]["spec"]["selector"], labels)
    assert _selects(objs["PodDisruptionBudget/falcon"]["spec"]["selector"]["matchLabels"], labels)
    assert _selects(objs["NetworkPolicy/falcon"]["spec"]["podSelector"]["matchLabels"], labels)
    service_labels = objs["Service/falcon"]["metadata"]["labels"]
    assert _selects(
        objs["ServiceMonitor/falcon"]["spec"]["selector"]["matchLabels"], service_labels
    )
    target = objs["HorizontalPodAutoscaler/falcon"]["spec"]["scaleTargetRef"]
    assert target == {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "falcon"}
    (sport,) = objs["Service/falcon"]["spec"]["ports"]
    (endpoint,) = objs["ServiceMonitor/falcon"]["spec"]["endpoints"]
    assert endpoint["port"] == sport["name"]
    assert endpoint["scheme"] == "https"
    assert sport["targetPort"] in {p["name"] for p in container(objs)["ports"]}
    (ingress,) = objs["NetworkPolicy/falcon"]["spec"]["ingress"]
    assert ingress["ports"][0]["port"] == sport["targetPort"]
    egress_ports = {
        p["port"] for r in objs["NetworkPolicy/falcon"]["spec"]["egress"] for p in r["ports"]
    }
    assert {53, 6379, 5432} <= egress_ports


def test_hpa_bounds_per_environment() -> None:
    for env, bounds in (("dev", (1, 2)), ("staging", (2, 4)), ("prod", (3, 12))):
        hpa = objects(env=env)["HorizontalPodAutoscaler/falcon"]["spec"]
        assert (hpa["minReplicas"], hpa["maxReplicas"]) == bounds
    assert "replicas" not in workload(objects())["spec"], "the HPA owns the count"


def test_migrations_run_in_a_job_once_per_release_never_in_serving_pods() -> None:
    objs = objects()
    (job,) = by_kind(objs, "Job")
    (c,) = job["spec"]["template"]["spec"]["containers"]
    assert c["command"][:3] == ["falcon", "db", "upgrade"]
    result = CliRunner().invoke(cli_app, [*c["command"][1:], "--help"])
    assert result.exit_code == 0, result.output  # a real command of the image's CLI
    assert "db" not in container(objs)["command"] + container(objs)["args"]
    same_release = by_kind(objects(env="dev", s=settings("dev", log_level="WARNING")), "Job")
    assert same_release[0]["metadata"]["name"] == job["metadata"]["name"]
    other = manifests(
        Spec(), settings("prod"), K8sOptions(image="registry.example/falcon:1.2.4"), "prod"
    )
    (other_job,) = [o for o in other if o["kind"] == "Job"]
    assert other_job["metadata"]["name"] != job["metadata"]["name"]


def test_a_settings_or_spec_change_rolls_the_pods() -> None:
    def config_hash(objs: dict[str, dict[str, Any]]) -> str:
        annotations = workload(objs)["spec"]["template"]["metadata"]["annotations"]
        return str(annotations["falcon/config-hash"])

    first = config_hash(objects())
    assert config_hash(objects()) == first
    assert config_hash(objects(s=settings("prod", max_batch_items=128))) != first
    assert config_hash(objects(Spec(alerts=AlertSpec(memory_percent=85)))) != first


def test_overlays_patch_only_what_differs_from_the_base() -> None:
    files = render_layout(Spec(), {"dev": settings("dev"), "prod": settings("prod")}, OPTIONS)
    assert not [f for f in files if f.startswith("overlays/dev/patches/")]
    prod_patches = sorted(f for f in files if f.startswith("overlays/prod/patches/"))
    assert prod_patches == [
        "overlays/prod/patches/configmap-settings.yaml",
        "overlays/prod/patches/hpa.yaml",
        "overlays/prod/patches/rollout.yaml",
    ]
    ops = yaml.safe_load(files["overlays/prod/patches/configmap-settings.yaml"])
    assert ops == [{"op": "replace", "path": "/data/FALCON_PROFILE", "value": "prod"}]


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"image": "registry.example/falcon:latest"}, "not pinned"),
        ({"image": "registry.example/falcon"}, "not pinned"),
        ({"memory": 0}, "memory limit is 0"),
    ],
)
def test_bad_input_is_a_clear_error(change: dict[str, Any], needle: str) -> None:
    options = K8sOptions(image=change.get("image", IMAGE))
    s = settings("prod", memory_limit_mb=change.get("memory"))
    with pytest.raises(ConfigError, match=needle):
        manifests(Spec(), s, options, "prod")


def test_pinned_images_are_accepted() -> None:
    for image in (
        "falcon:0.1.0",
        "localhost:5000/team/falcon:2026.10.1",
        "registry.example/falcon@sha256:" + "a" * 64,
    ):
        assert manifests(Spec(), settings("prod"), K8sOptions(image=image), "prod")


def test_cli_prints_one_environment_or_writes_the_layout(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)  # no falcon.yaml, no config/: the built-in defaults
    for name in [n for n in os.environ if n.startswith("FALCON_")]:
        monkeypatch.delenv(name)
    runner = CliRunner()
    printed = runner.invoke(cli_app, ["render", "k8s", "--env", "staging", "--image", IMAGE])
    assert printed.exit_code == 0, printed.output
    docs = [d for d in yaml.safe_load_all(printed.stdout) if d]
    assert docs == manifests(Spec(), settings("staging"), OPTIONS, "staging")
    written = runner.invoke(
        cli_app, ["render", "k8s", "--out", "out", "--env", "prod", "--image", IMAGE]
    )
    assert written.exit_code == 0, written.output
    overlays = sorted(p.name for p in (tmp_path / "out" / "overlays").iterdir())
    assert overlays == ["prod"]
    assert (tmp_path / "out" / "base" / "kustomization.yaml").is_file()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ([], "give --out DIR"),
        (["--env", "qa"], "use one of dev, staging, prod"),
        (["--env", "prod", "--image", "falcon"], "not pinned"),
    ],
)
def test_cli_bad_input_exits_2_with_the_fix(args: list[str], needle: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "falcon"), "render", "k8s", *args],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert needle in done.stderr
    assert done.stdout == ""
