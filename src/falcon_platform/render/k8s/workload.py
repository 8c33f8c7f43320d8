"""The serving workload and what scales and protects it: Deployment, HPA, PodDisruptionBudget.

Kubernetes is the supervisor here: it restarts a worker (CrashLoopBackOff), kills it at its
memory limit (OOMKilled, exit 137) and takes it out of the Service while ``/readyz`` fails.

**Deployment now, Argo Rollout later.** :func:`serving_workload` returns a ``Deployment``. The
releases feature (canary steps and the canary judge's thresholds) will return an Argo
``Rollout`` there when the spec has a canary: the same pod template, ``strategy.canary.steps``
from ``spec.canary.steps`` and an ``AnalysisTemplate`` from the judge's definitions. The HPA
and the PDB take their target from the workload object, so they follow without change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from falcon_platform.render.k8s import options as o
from falcon_platform.render.k8s.names import Names


@dataclass(frozen=True)
class WorkloadRef:
    api_version: str
    kind: str
    name: str

    @classmethod
    def of(cls, obj: dict[str, Any]) -> WorkloadRef:
        return cls(obj["apiVersion"], obj["kind"], obj["metadata"]["name"])


def serving_workload(names: Names, template: dict[str, Any]) -> dict[str, Any]:
    """The object that runs the serving pods (a Deployment until the canary judge exists).

    No ``replicas``: the HPA owns the count, and a ``kubectl apply`` that set it would undo
    every scaling decision."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": names.workload, "labels": names.labels("server")},
        "spec": {
            "selector": {"matchLabels": names.selector("server")},
            "revisionHistoryLimit": 10,  # `kubectl rollout undo` goes back this far
            "minReadySeconds": 5,
            "progressDeadlineSeconds": 600,
            # Never below the current capacity during a release: a new pod must be ready
            # (model loaded, schema current) before an old one is drained.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0},
            },
            "template": template,
        },
    }


def autoscaler(
    names: Names, target: WorkloadRef, replicas: o.Replicas, cpu_percent: int
) -> dict[str, Any]:
    """CPU-based HPA; the requests/s metric is the optional ``requests-per-second`` component."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": names.workload, "labels": names.labels("server")},
        "spec": {
            "scaleTargetRef": {
                "apiVersion": target.api_version,
                "kind": target.kind,
                "name": target.name,
            },
            "minReplicas": replicas.min,
            "maxReplicas": replicas.max,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": cpu_percent},
                    },
                }
            ],
        },
    }


def requests_per_second_metric(per_pod: int) -> dict[str, Any]:
    """The HPA metric a Prometheus adapter serves (docs/KUBERNETES.md has its rule)."""
    return {
        "type": "Pods",
        "pods": {
            "metric": {"name": "falcon_requests_per_second"},
            "target": {"type": "AverageValue", "averageValue": str(per_pod)},
        },
    }


def disruption_budget(names: Names) -> dict[str, Any]:
    """One pod at a time in a node drain; a crash-looping pod may always be evicted."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": names.workload, "labels": names.labels("server")},
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": names.selector("server")},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }
