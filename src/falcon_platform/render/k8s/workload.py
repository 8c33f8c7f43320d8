"""The serving workload and what scales and protects it: Rollout or Deployment, HPA, PDB.

Kubernetes is the supervisor here: it restarts a worker (CrashLoopBackOff), kills it at its
memory limit (OOMKilled, exit 137) and takes it out of the Service while ``/readyz`` fails.

**Rollout when the spec has canary steps, else Deployment.** :func:`serving_rollout` is an
Argo ``Rollout`` with the same pod template: ``strategy.canary.steps`` from ``canary.steps``
(a replica-ratio canary, as on one machine: no traffic router, the Service selects stable and
canary pods alike), the judge in the background (``analysis.py``) and a traffic check closing
each step. The HPA and the PDB take their target from the workload object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from falcon_platform.config.spec import CanarySpec
from falcon_platform.render.k8s import analysis
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
    """A Deployment of the serving pods (when the spec has no canary steps).

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


def _hash_args(*which: tuple[str, str]) -> list[dict[str, Any]]:
    """Analysis arguments: a ReplicaSet's pod-template hash (Latest = canary) and the namespace."""
    args: list[dict[str, Any]] = [
        {"name": name, "valueFrom": {"podTemplateHashValue": rs}} for name, rs in which
    ]
    args.append(
        {"name": analysis.NAMESPACE, "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}
    )
    return args


def canary_steps(canary: CanarySpec, names: Names) -> list[dict[str, Any]]:
    """``setWeight``, ``pause`` for the step's duration, then did the canary see enough
    requests in that pause for a verdict (Inconclusive pauses the Rollout when not)."""
    steps: list[dict[str, Any]] = []
    for step in canary.steps:
        steps.append({"setWeight": step.weight})
        if step.pause > 0:
            steps.append({"pause": {"duration": analysis.go_duration(step.pause)}})
        if canary.min_requests > 0:
            window = analysis.go_duration(max(step.pause, o.ANALYSIS_WINDOW_S))
            steps.append(
                {
                    "analysis": {
                        "templates": [{"templateName": names.canary_traffic}],
                        "args": [
                            *_hash_args((analysis.CANARY_HASH, "Latest")),
                            {"name": analysis.WINDOW, "value": window},
                        ],
                    }
                }
            )
    return steps


def serving_rollout(names: Names, template: dict[str, Any], canary: CanarySpec) -> dict[str, Any]:
    """An Argo Rollout of the serving pods: the Deployment's fields, canary steps, analysis.

    ``maxSurge``/``maxUnavailable`` as the Deployment's: a canary pod is added before a stable
    one goes. Abort (a failed analysis, or ``kubectl argo rollouts abort``) scales the stable
    ReplicaSet back up and the canary down, as the local rollback does."""
    return {
        "apiVersion": analysis.API_VERSION,
        "kind": "Rollout",
        "metadata": {"name": names.workload, "labels": names.labels("server")},
        "spec": {
            "selector": {"matchLabels": names.selector("server")},
            "revisionHistoryLimit": 10,  # `kubectl argo rollouts undo` goes back this far
            "minReadySeconds": 5,
            "progressDeadlineSeconds": 600,
            "strategy": {
                "canary": {
                    "maxSurge": "25%",
                    "maxUnavailable": 0,
                    "analysis": {
                        "templates": [{"templateName": names.canary_analysis}],
                        "args": _hash_args(
                            (analysis.CANARY_HASH, "Latest"), (analysis.STABLE_HASH, "Stable")
                        ),
                    },
                    "steps": canary_steps(canary, names),
                }
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
