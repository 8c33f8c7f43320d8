"""The rendered Kubernetes layout with real tools and a real worker, no cluster.

- ``kubectl kustomize`` builds every overlay (and the requests/s component) into exactly the
  objects the renderer meant; the built objects pass kubernetes-validate again;
- ``promtool check rules`` accepts the PrometheusRule's groups as built;
- ``falcon render k8s`` run with secrets in its environment writes none of them;
- the serving container's command, run as the pod would run it (its ConfigMap, its TLS
  files, its downward-API identity), answers the probes on the rendered paths, exports the
  container's memory limit, and drains an in-flight request within the rendered grace;
- the migration Job's command fits in the Job's memory limit.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from falcon_platform.config.settings import Settings
from falcon_platform.config.spec import Spec
from falcon_platform.render.k8s import ENVIRONMENTS, K8sOptions, manifests, render_layout
from falcon_platform.render.k8s.layout import RPS_COMPONENT
from falcon_platform.render.k8s.pod import drain_budget_s
from falcon_platform.testing.k8s import (
    kubectl,
    kustomize_build,
    latest_kubernetes,
    validate_core,
    validate_custom,
)
from falcon_platform.testing.net import free_port
from falcon_platform.testing.servers import find_binary

pytestmark = pytest.mark.integration

OPTIONS = K8sOptions(image="registry.example/falcon:0.1.0")
FALCON = str(Path(sys.executable).parent / "falcon")
MI = 1_048_576
WORKLOAD_KINDS = ("Rollout", "Deployment")
CUSTOM_API_GROUPS = ("monitoring.coreos.com/", "argoproj.io/")
CRDS = Path(__file__).parents[1] / "data" / "k8s-crds"
ARGO_CRDS = {
    "Rollout": CRDS / "argo-rollouts-rollout-crd.yaml",
    "AnalysisTemplate": CRDS / "argo-rollouts-analysis-template-crd.yaml",
}


def settings_for(env: str, **values: Any) -> Settings:
    return Settings.model_construct(profile=env, **values)


def keyed(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("k8s")
    envs = {e: settings_for(e) for e in ENVIRONMENTS}
    for name, text in render_layout(Spec(), envs, OPTIONS).items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    return out


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_kubectl_kustomize_builds_each_overlay_into_the_rendered_objects(
    layout: Path, env: str
) -> None:
    built = kustomize_build(kubectl(), layout / "overlays" / env)
    expected = manifests(Spec(), settings_for(env), OPTIONS, env)
    assert keyed(built) == keyed(expected)
    for obj in built:
        if not obj["apiVersion"].startswith(CUSTOM_API_GROUPS):
            validate_core(obj, latest_kubernetes())
        elif obj["kind"] in ARGO_CRDS:  # as built: kustomize must not have mangled them
            validate_custom(obj, ARGO_CRDS[obj["kind"]])


def test_the_requests_per_second_component_adds_a_valid_hpa_metric(
    layout: Path, tmp_path: Path
) -> None:
    overlay = layout / "overlays" / "with-rps"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": ["../prod"],
                "components": [f"../../components/{RPS_COMPONENT}"],
            }
        )
    )
    built = keyed(kustomize_build(kubectl(), overlay))
    hpa = built[("HorizontalPodAutoscaler", "falcon")]
    assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Resource", "Pods"]
    assert hpa["spec"]["metrics"][1]["pods"]["metric"]["name"] == "falcon_requests_per_second"
    validate_core(hpa, latest_kubernetes())


def test_promtool_accepts_the_built_prometheus_rule(layout: Path, tmp_path: Path) -> None:
    promtool = find_binary("promtool")
    built = keyed(kustomize_build(kubectl(), layout / "overlays" / "prod"))
    rules = tmp_path / "rules.yml"
    rules.write_text(
        yaml.safe_dump({"groups": built[("PrometheusRule", "falcon")]["spec"]["groups"]})
    )
    done = subprocess.run(
        [promtool, "check", "rules", str(rules)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_the_promtool_scenario_tests_pass_on_the_built_prometheus_rule(
    layout: Path, tmp_path: Path
) -> None:
    """tests/promtool/*.test.yml (the seed incident and the others, step by step) against the
    rules as the cluster gets them: Prometheus fires the same alerts at the same steps."""
    promtool = find_binary("promtool")
    built = keyed(kustomize_build(kubectl(), layout / "overlays" / "prod"))
    groups = built[("PrometheusRule", "falcon")]["spec"]["groups"]
    scenarios = sorted((Path(__file__).parents[1] / "promtool").glob("*.test.yml"))
    assert scenarios
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": groups}))
    (tmp_path / "tests").mkdir()
    for scenario in scenarios:
        test = yaml.safe_load(scenario.read_text())
        test["rule_files"] = ["../rules.yml"]
        (tmp_path / "tests" / scenario.name).write_text(yaml.safe_dump(test, sort_keys=False))
    done = subprocess.run(
        [promtool, "test", "rules", *(s.name for s in scenarios)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path / "tests", check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("SUCCESS") == len(scenarios)


def test_the_cli_writes_no_secret_from_its_environment(tmp_path: Path) -> None:
    secrets = {
        "FALCON_ADMIN_TOKEN": "adm-7f3e9c1b5d2a8e4f6c0b",
        "FALCON_DATABASE_URL": "postgresql://falcon:pgpw-4b8d2f6a1c3e@db.internal:5432/falcon",
        "FALCON_REDIS_URL": "redis://:rdpw-9e1c5a7b3d2f@redis.internal:6379/0",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("FALCON_")}
    env.update(secrets, FALCON_MAX_BATCH_ITEMS="128")
    out = tmp_path / "out"
    done = subprocess.run(
        [FALCON, "render", "k8s", "--out", str(out), "--image", OPTIONS.image],
        capture_output=True, text=True, timeout=120, check=False, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stderr
    needles = [
        "adm-7f3e9c1b5d2a8e4f6c0b",
        "pgpw-4b8d2f6a1c3e",
        "rdpw-9e1c5a7b3d2f",
        *secrets.values(),
    ]
    needles += [base64.b64encode(n.encode()).decode() for n in needles]
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) > 20
    for path in files:
        text = path.read_text()
        for needle in needles:
            assert needle not in text, f"{needle!r} written to {path}"
    # the environment's non-secret setting did reach every overlay
    for env_name in ENVIRONMENTS:
        patch = (out / "overlays" / env_name / "patches" / "configmap-settings.yaml").read_text()
        assert "FALCON_MAX_BATCH_ITEMS" in patch
    printed = subprocess.run(
        [FALCON, "render", "k8s", "--env", "prod", "--image", OPTIONS.image],
        capture_output=True, text=True, timeout=120, check=False, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert printed.returncode == 0, printed.stderr
    assert all(n not in printed.stdout for n in needles)
    assert any(d["kind"] == "Rollout" for d in yaml.safe_load_all(printed.stdout) if d)


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1, as the operator's kubernetes.io/tls Secret would hold."""
    cert, key = directory / "tls.crt", directory / "tls.key"
    subprocess.run(
        [
            find_binary("openssl"), "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=falcon",
            "-addext", "subjectAltName=DNS:falcon,IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def _pod_process(
    tmp_path: Path,
    model_path: Path,
    objs: dict[tuple[str, str], dict[str, Any]],
    extra_args: list[str],
) -> tuple[subprocess.Popen[bytes], int, Path, Path]:
    """Run the serving container's command with the pod's environment, paths moved under
    tmp_path (the pod's mounts), bound to loopback on a free port."""
    (workload,) = [o for k, o in objs.items() if k[0] in WORKLOAD_KINDS]
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    data = dict(objs[("ConfigMap", "falcon-settings")]["data"])
    spec_text = objs[("ConfigMap", "falcon-spec")]["data"]["falcon.yaml"]
    (tmp_path / "spec").mkdir()
    (tmp_path / "spec" / "falcon.yaml").write_text(spec_text)
    cert, key = _self_signed(tmp_path)
    data.update(
        FALCON_HOME=str(tmp_path / "home"),
        FALCON_SPEC_PATH=str(tmp_path / "spec" / "falcon.yaml"),
        FALCON_MODEL_PATH=str(model_path),
        FALCON_TLS_CERTFILE=str(cert),
        FALCON_TLS_KEYFILE=str(key),
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FALCON_")}
    env.update(data)
    # what the kubelet sets from the downward API and the Secret
    env.update(
        FALCON_WORKER_ID="falcon-7d9f8b6c5-x2x4q",
        FALCON_RELEASE="7d9f8b6c5",
        FALCON_ADMIN_TOKEN="adm-7f3e9c1b5d2a8e4f6c0b",
        # nothing listens there: the request log waits on disk, the worst case for the drain
        FALCON_DATABASE_URL=f"postgresql://falcon:pgpw-4b8d2f6a1c3e@127.0.0.1:{free_port()}/falcon",
    )
    port = free_port()
    args = list(container["args"])
    args[args.index("--port") + 1] = str(port)
    args[args.index("--host") + 1] = "127.0.0.1"  # loopback only on a test machine
    command = [sys.executable if c == "python" else c for c in container["command"]]
    log = tmp_path / "worker.log"
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            [*command, *args, *extra_args],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    return proc, port, cert, log


def _logged_at(log: Path, message: str) -> float:
    """Epoch seconds of the worker's JSON log line whose message starts with ``message``."""
    for line in log.read_text().splitlines():
        if line.startswith("{") and json.loads(line).get("msg", "").startswith(message):
            stamp = json.loads(line)["ts"].replace("Z", "+00:00")
            return datetime.fromisoformat(stamp).timestamp()
    raise AssertionError(f"no {message!r} in the worker's log:\n{log.read_text()[-3000:]}")


def _wait_ready(client: httpx.Client, url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            if client.get(url).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"not ready in 90 s:\n{log.read_text()[-3000:]}")


def test_the_pod_command_serves_probes_exports_its_limit_and_drains_in_its_grace(
    tmp_path: Path, model_path: Path
) -> None:
    rendered = settings_for("prod", shutdown_grace_s=4.0, inference_timeout_ms=3000)
    objs = keyed(manifests(Spec(), rendered, OPTIONS, "prod"))
    (workload,) = [o for k, o in objs.items() if k[0] in WORKLOAD_KINDS]
    pod = workload["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    budget = drain_budget_s(rendered)
    assert budget == 0.5 + 4 + 3 + 4
    assert pod["terminationGracePeriodSeconds"] >= 5 + budget  # preStop sleep + drain

    # A drill, deliberately: 1.5 s of latency per request, allowed on the command line.
    objs[("ConfigMap", "falcon-settings")]["data"]["FALCON_FAULTS"] = "latency_ms=1500"
    proc, port, cert, log = _pod_process(tmp_path, model_path, objs, ["--allow-faults"])
    base = f"https://127.0.0.1:{port}"
    tls = ssl.create_default_context(cafile=str(cert))
    try:
        with httpx.Client(verify=tls, timeout=10) as client:
            _wait_ready(client, base + container["readinessProbe"]["httpGet"]["path"], proc, log)
            assert (
                client.get(base + container["livenessProbe"]["httpGet"]["path"]).status_code == 200
            )
            metrics = client.get(base + "/metrics").text
            limit_line = next(
                line
                for line in metrics.splitlines()
                if line.startswith("falcon_memory_limit_bytes{")
            )
            assert 'worker="falcon-7d9f8b6c5-x2x4q"' in limit_line
            assert 'release="7d9f8b6c5"' in limit_line
            assert float(limit_line.rsplit(" ", 1)[1]) == 512 * MI
            assert container["resources"]["limits"]["memory"] == "512Mi"

            answer: dict[str, Any] = {}

            def slow_request() -> None:
                with httpx.Client(verify=tls, timeout=20) as c:
                    answer["response"] = c.post(base + "/infer", json={"text": "drain me"})

            thread = threading.Thread(target=slow_request)
            thread.start()
            time.sleep(0.5)  # the request is inside its 1.5 s of latency
            sigterm_at = time.time()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=120)
            exited = time.time() - sigterm_at
            thread.join(timeout=20)
        assert code == 0, log.read_text()[-3000:]
        assert answer["response"].status_code == 200
        # The drain is over when uvicorn has finished: the request answered, the request log
        # shipped or left in the spool. What follows is the interpreter's exit, which a SIGKILL
        # at the end of the grace period would cut short without losing anything.
        drained = _logged_at(log, "Finished server process") - sigterm_at
        allowed = (
            pod["terminationGracePeriodSeconds"]
            - container["lifecycle"]["preStop"]["sleep"]["seconds"]
        )
        print(
            f"SIGTERM -> drained in {drained:.1f} s (bound {budget} s), exit 0 after "
            f"{exited:.1f} s (the kubelet allows {allowed} s after SIGTERM)"
        )
        assert drained <= budget, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_the_migration_job_command_fits_its_memory_limit(tmp_path: Path) -> None:
    """`falcon db upgrade` (here on the embedded SQLite) peaks below the Job's limit."""
    objs = keyed(manifests(Spec(), settings_for("prod"), OPTIONS, "prod"))
    (job,) = [o for k, o in objs.items() if k[0] == "Job"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    limit = int(container["resources"]["limits"]["memory"].removesuffix("Mi")) * MI
    command = [FALCON if c == "falcon" else c for c in container["command"]]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FALCON_")}
    env.update(FALCON_HOME=str(tmp_path / "home"))
    probe = (
        "import json, resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "print(json.dumps({'rc': done.returncode, 'out': done.stdout, 'err': done.stderr,\n"
        "  'maxrss_kib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, *command],
        capture_output=True, text=True, timeout=120, check=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    result = json.loads(done.stdout)
    assert result["rc"] == 0, result["err"]
    assert json.loads(result["out"])["up_to_date"] is True
    peak = result["maxrss_kib"] * 1024
    print(f"falcon db upgrade: peak RSS {peak / MI:.0f} MiB, Job limit {limit / MI:.0f} MiB")
    assert peak < limit * 0.8, f"peak RSS {peak / MI:.0f} MiB vs limit {limit / MI:.0f} MiB"
