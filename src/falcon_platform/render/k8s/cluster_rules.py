"""Alerts for what only the cluster knows: the twins of the supervisor's own alerts, and the Rollout.

On one machine the supervisor counts OOM kills, detects a crash loop and knows how many workers
are ready; on Kubernetes the kubelet does those things, and kube-state-metrics (and Argo
Rollouts' controller) export them. The ``<service>`` PrometheusRule stays exactly the rules of
``falcon render prometheus``; these go into a second one, ``<service>-kubernetes``, group
``falcon-kubernetes``, with the same windows and severities as their single-machine twins::

    [a.name for a in cluster_alerts(Spec(), Names("falcon"), rollout=True)]
    # ['FalconPodOOMKilled', 'FalconPodCrashLooping', 'FalconNoAvailablePod',
    #  'FalconRolloutAborted', 'FalconRolloutPaused']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from falcon_platform.config.spec import Spec, format_duration
from falcon_platform.observability.alert_defs import runbook_url
from falcon_platform.render.k8s import options as o
from falcon_platform.render.k8s.names import Names

GROUP = "falcon-kubernetes"


@dataclass(frozen=True)
class ClusterAlert:
    name: str
    severity: str
    expr: str
    for_s: float
    summary: str
    description: str
    twin_of: str  # the single-machine alert this one stands for ("" when none)


def cluster_alerts(spec: Spec, names: Names, *, rollout: bool) -> list[ClusterAlert]:
    """The alerts, with the spec's windows (``alerts:``, ``restart:``, ``canary.steps``)."""
    a = spec.alerts
    pod = f'container="{o.CONTAINER}", pod=~"{names.workload}-.*"'
    oom_window = format_duration(a.oom_kill_window)
    loop_window = format_duration(spec.restart.crash_loop_window)
    if rollout:
        available = f'rollout_info_replicas_available{{name="{names.workload}"}}'
    else:
        available = f'kube_deployment_status_replicas_available{{deployment="{names.workload}"}}'
    alerts = [
        ClusterAlert(
            "FalconPodOOMKilled",
            "critical",
            f"max by (namespace, pod) (increase(kube_pod_container_status_restarts_total{{{pod}}}"
            f"[{oom_window}])) > 0\nand on (namespace, pod)\n"
            "max by (namespace, pod) (kube_pod_container_status_last_terminated_reason"
            f'{{{pod}, reason="OOMKilled"}}) == 1',
            0.0,
            "Pod {{ $labels.pod }} was OOM-killed",
            f"The worker in pod {{{{ $labels.pod }}}} exceeded its memory limit and was killed "
            f"(exit 137) within the last {oom_window}; the kubelet restarted it.",
            "FalconWorkerOOMKilled",
        ),
        ClusterAlert(
            "FalconPodCrashLooping",
            "critical",
            "max by (namespace, pod) (max_over_time(kube_pod_container_status_waiting_reason"
            f'{{{pod}, reason="CrashLoopBackOff"}}[{loop_window}])) >= 1',
            0.0,
            "Pod {{ $labels.pod }} is crash-looping",
            f"The worker in pod {{{{ $labels.pod }}}} was in CrashLoopBackOff within the last "
            f"{loop_window}: it exits soon after every start and the kubelet backs off.",
            "FalconCrashLoop",
        ),
        ClusterAlert(
            "FalconNoAvailablePod",
            "critical",
            f"max by (namespace) ({available}) < 1",
            a.no_ready_worker_for,
            "No Falcon pod is available: every request fails",
            f"No serving pod has been available (ready for minReadySeconds) for "
            f"{format_duration(a.no_ready_worker_for)}.",
            "FalconNoReadyWorker",
        ),
    ]
    if rollout:
        # Paused this long past its longest timed pause (canary.inconclusive_timeout, after
        # which the local rollout aborts), a canary waits for a person, not for its timer.
        longest = max([s.pause for s in spec.canary.steps], default=0.0)
        stuck = longest + spec.canary.inconclusive_timeout
        rollout_info = f'rollout_info{{name="{names.workload}"'
        alerts += [
            ClusterAlert(
                "FalconRolloutAborted",
                "critical",
                f'max by (namespace, name) ({rollout_info}, phase="Degraded"}}) == 1',
                0.0,
                "Rollout {{ $labels.name }} is Degraded: its canary was aborted",
                "A canary analysis failed (or someone ran `kubectl argo rollouts abort`), or new "
                "pods did not become available within progressDeadlineSeconds; the stable pods "
                "serve. See the failed AnalysisRun's measurements.",
                # Argo aborts on a cluster: the supervisor's counter behind the twin is absent
                # there, so the `<service>` rule never fires and this one pages alone.
                "FalconCanaryAborted",
            ),
            ClusterAlert(
                "FalconRolloutPaused",
                "warning",
                f'max by (namespace, name) ({rollout_info}, phase="Paused"}}) == 1',
                stuck,
                "Rollout {{ $labels.name }} has been paused longer than any canary step",
                f"Paused for more than {format_duration(stuck)} (the longest step pause plus "
                "canary.inconclusive_timeout): a step's traffic check was Inconclusive (too few "
                "requests for a verdict) or someone paused it; it waits for promote or abort.",
                "",
            ),
        ]
    return alerts


def cluster_rule(spec: Spec, names: Names, *, rollout: bool) -> dict[str, Any]:
    """PrometheusRule ``<service>-kubernetes`` (needs kube-state-metrics; Argo's controller
    metrics for the Rollout alerts)."""
    rules = []
    for alert in cluster_alerts(spec, names, rollout=rollout):
        rule: dict[str, Any] = {"alert": alert.name, "expr": alert.expr}
        if alert.for_s > 0:
            rule["for"] = format_duration(alert.for_s)
        rule["labels"] = {"severity": alert.severity, "service": spec.service}
        rule["annotations"] = {
            "summary": alert.summary,
            "description": alert.description,
            "runbook_url": runbook_url(alert.name),
        }
        rules.append(rule)
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": names.cluster_rules, "labels": names.labels("server")},
        "spec": {"groups": [{"name": GROUP, "rules": rules}]},
    }
