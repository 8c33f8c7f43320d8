"""The cluster's own alerts fire on the series kube-state-metrics and Argo Rollouts export.

``promtool check rules`` accepts the ``<service>-kubernetes`` PrometheusRule as rendered, and
``promtool test rules`` shows each alert firing on the series a real incident produces (and
not on its look-alike): an OOM kill (not an ordinary crash), a crash loop, no available pod,
an aborted canary, a canary paused past its steps (not one in its timed pause). Series names
and labels are kube-state-metrics' and the Argo Rollouts controller's.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from falcon_platform.config.settings import Settings
from falcon_platform.config.spec import Spec
from falcon_platform.render.k8s import K8sOptions, manifests
from falcon_platform.testing.servers import find_binary

pytestmark = pytest.mark.integration

POD = 'namespace="falcon-prod", pod="falcon-7d4b9c-x2k4q", container="falcon"'
JOB_POD = 'namespace="falcon-prod", pod="falcon-db-upgrade-1a2b-z9", container="db-upgrade"'
ROLLOUT = 'namespace="falcon-prod", name="falcon", strategy="canary", traffic_router=""'


def groups(*, rollout: bool) -> list[dict[str, Any]]:
    objs = manifests(
        Spec(),
        Settings.model_construct(profile="prod"),
        K8sOptions(image="registry.example/falcon:0.1.0", rollout=None if rollout else False),
        "prod",
    )
    (rule,) = [o for o in objs if o["metadata"]["name"] == "falcon-kubernetes"]
    result: list[dict[str, Any]] = rule["spec"]["groups"]
    return result


def _annotate(rule_groups: list[dict[str, Any]], tests: list[dict[str, Any]]) -> None:
    """promtool compares annotations too: the rule's own, with the pinned labels expanded."""
    rules = {r["alert"]: r for g in rule_groups for r in g["rules"]}
    for test in tests:
        for check in test["alert_rule_test"]:
            for alert in check["exp_alerts"]:
                expanded = {}
                for key, text in rules[check["alertname"]]["annotations"].items():
                    for label, value in alert["exp_labels"].items():
                        text = text.replace("{{ $labels.%s }}" % label, value)  # noqa: UP031
                    expanded[key] = text
                alert["exp_annotations"] = expanded


def run(tmp_path: Path, rule_groups: list[dict[str, Any]], tests: list[dict[str, Any]]) -> str:
    _annotate(rule_groups, tests)
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": rule_groups}))
    promtool = find_binary("promtool")
    checked = subprocess.run(
        [promtool, "check", "rules", "rules.yml"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    (tmp_path / "alerts.test.yml").write_text(
        yaml.safe_dump({"rule_files": ["rules.yml"], "tests": tests}, sort_keys=False)
    )
    done = subprocess.run(
        [promtool, "test", "rules", "alerts.test.yml"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    return done.stdout


def firing(name: str, at: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """``exp_alerts`` with only the labels the test pins (promtool compares all of them)."""
    expected = [] if labels is None else [{"exp_labels": labels}]
    return {"alertname": name, "eval_time": at, "exp_alerts": expected}


def with_rule_labels(alert: str, severity: str, /, **labels: str) -> dict[str, str]:
    return {"alertname": alert, "severity": severity, "service": "falcon", **labels}


def test_the_pod_alerts_fire_on_an_oom_kill_and_a_crash_loop_not_on_a_plain_restart(
    tmp_path: Path,
) -> None:
    pod_labels = {"namespace": "falcon-prod", "pod": "falcon-7d4b9c-x2k4q"}
    tests = [
        {  # an OOM kill at 3m: a restart, and the last termination's reason is OOMKilled
            "interval": "1m",
            "input_series": [
                {"series": f"kube_pod_container_status_restarts_total{{{POD}}}", "values": "0 0 0 1 1 1 1 1 1 1 1 1"},
                {"series": f'kube_pod_container_status_last_terminated_reason{{{POD}, reason="OOMKilled"}}', "values": "_ _ _ 1 1 1 1 1 1 1 1 1"},
                # the migration Job's container is not a serving pod
                {"series": f"kube_pod_container_status_restarts_total{{{JOB_POD}}}", "values": "0 1 2 3 4 5 6 7 8 9 10 11"},
                {"series": f'kube_pod_container_status_last_terminated_reason{{{JOB_POD}, reason="OOMKilled"}}', "values": "1x11"},
            ],
            "alert_rule_test": [
                firing("FalconPodOOMKilled", "2m"),
                firing("FalconPodOOMKilled", "4m", with_rule_labels("FalconPodOOMKilled", "critical", **pod_labels)),
                firing("FalconPodOOMKilled", "10m"),  # 5m window (alerts.oom_kill_window) past
                firing("FalconPodCrashLooping", "4m"),
            ],
        },
        {  # a plain crash (reason Error) restarts the pod: not an OOM kill
            "interval": "1m",
            "input_series": [
                {"series": f"kube_pod_container_status_restarts_total{{{POD}}}", "values": "0 0 0 1 1 1"},
                {"series": f'kube_pod_container_status_last_terminated_reason{{{POD}, reason="Error"}}', "values": "_ _ _ 1 1 1"},
            ],
            "alert_rule_test": [firing("FalconPodOOMKilled", "4m")],
        },
        {  # CrashLoopBackOff from 2m to 4m: fires at once, resolves 10m later (the window)
            "interval": "1m",
            "input_series": [
                {"series": f'kube_pod_container_status_waiting_reason{{{POD}, reason="CrashLoopBackOff"}}', "values": "_ _ 1 1 1 0 0 0 0 0 0 0 0 0 0 0"},
            ],
            "alert_rule_test": [
                firing("FalconPodCrashLooping", "1m"),
                firing("FalconPodCrashLooping", "2m", with_rule_labels("FalconPodCrashLooping", "critical", **pod_labels)),
                firing("FalconPodCrashLooping", "13m", with_rule_labels("FalconPodCrashLooping", "critical", **pod_labels)),
                firing("FalconPodCrashLooping", "15m"),
            ],
        },
    ]  # fmt: skip
    assert "SUCCESS" in run(tmp_path, groups(rollout=True), tests)


def test_the_rollout_alerts_fire_on_an_abort_and_on_a_pause_past_its_steps(
    tmp_path: Path,
) -> None:
    """Default steps: pauses 1m, 1m, 2m; FalconRolloutPaused waits 2m + canary's
    inconclusive_timeout (5m) = 7m."""
    labels = {"namespace": "falcon-prod", "name": "falcon"}
    tests = [
        {
            "interval": "1m",
            "input_series": [
                # Progressing, a timed 2 m pause, Progressing, then Degraded (aborted) at 6m
                {"series": f'rollout_info{{{ROLLOUT}, phase="Progressing"}}', "values": "1 1 _ _ 1 1 _ _ _ _"},
                {"series": f'rollout_info{{{ROLLOUT}, phase="Paused"}}', "values": "_ _ 1 1 _ _ _ _ _ _"},
                {"series": f'rollout_info{{{ROLLOUT}, phase="Degraded"}}', "values": "_ _ _ _ _ _ 1 1 1 1"},
                {"series": 'rollout_info_replicas_available{namespace="falcon-prod", name="falcon"}', "values": "3x9"},
            ],
            "alert_rule_test": [
                firing("FalconRolloutAborted", "5m"),
                firing("FalconRolloutAborted", "6m", with_rule_labels("FalconRolloutAborted", "critical", **labels)),
                firing("FalconRolloutPaused", "3m"),  # a step's own pause
                firing("FalconNoAvailablePod", "9m"),  # the stable pods serve
            ],
        },
        {  # paused from 1m on (an Inconclusive step check): pending until 8m
            "interval": "1m",
            "input_series": [
                {"series": f'rollout_info{{{ROLLOUT}, phase="Paused"}}', "values": "_ 1x20"},
                {"series": 'rollout_info_replicas_available{namespace="falcon-prod", name="falcon"}', "values": "0 0 0 3x18"},
            ],
            "alert_rule_test": [
                firing("FalconRolloutPaused", "7m"),
                firing("FalconRolloutPaused", "8m", with_rule_labels("FalconRolloutPaused", "warning", **labels)),
                # none available from 0m to 2m: fires after 30 s (alerts.no_ready_worker_for)
                firing("FalconNoAvailablePod", "1m", with_rule_labels("FalconNoAvailablePod", "critical", namespace="falcon-prod")),
                firing("FalconNoAvailablePod", "4m"),
            ],
        },
    ]  # fmt: skip
    assert "SUCCESS" in run(tmp_path, groups(rollout=True), tests)


def test_a_deployment_gets_the_pod_alerts_on_its_own_metric_and_no_rollout_alerts(
    tmp_path: Path,
) -> None:
    rule_groups = groups(rollout=False)
    names = [r["alert"] for g in rule_groups for r in g["rules"]]
    assert names == ["FalconPodOOMKilled", "FalconPodCrashLooping", "FalconNoAvailablePod"]
    tests = [
        {
            "interval": "1m",
            "input_series": [
                {"series": 'kube_deployment_status_replicas_available{namespace="falcon-prod", deployment="falcon"}', "values": "3 0 0 0"},
            ],
            "alert_rule_test": [
                firing("FalconNoAvailablePod", "1m"),  # for: 30s, not yet
                firing("FalconNoAvailablePod", "2m", with_rule_labels("FalconNoAvailablePod", "critical", namespace="falcon-prod")),
            ],
        }
    ]  # fmt: skip
    assert "SUCCESS" in run(tmp_path, rule_groups, tests)
