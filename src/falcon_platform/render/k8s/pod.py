"""The serving pod: one Falcon worker, its probes, its drain, its security context, its volumes.

The same template goes into a ``Deployment`` or an Argo ``Rollout`` (``workload.py``); only the
label that carries the ReplicaSet's hash differs (``hash_label``)::

    template = pod_template(spec, settings, options, names, config_hash="3f2a...")

Drain, from ``kubectl delete pod`` to exit (each step's bound, in order):

1. preStop ``sleep`` (``PRESTOP_SLEEP_S``): endpoints are being removed, the worker still serves;
2. SIGTERM: readiness 503, the listener closes, ``DRAIN_SETTLE_S`` for requests on the wire;
3. in-flight requests finish: up to ``ceil(FALCON_SHUTDOWN_GRACE_S)`` (uvicorn's graceful wait);
4. the batcher closes: up to ``min(grace, FALCON_INFERENCE_TIMEOUT_MS)``;
5. the request log is shipped: up to ``FALCON_SHUTDOWN_GRACE_S`` (what is left stays in the
   spool volume, shipped by the next container of the pod);
6. ``EXIT_MARGIN_S``, then the kubelet's SIGKILL (``terminationGracePeriodSeconds``).
"""

from __future__ import annotations

import math
from typing import Any

from falcon_platform.config.settings import Settings
from falcon_platform.config.spec import Spec
from falcon_platform.render.k8s import options as o
from falcon_platform.render.k8s.names import Names
from falcon_platform.render.k8s.settings_env import (
    downward_env,
    pod_memory_limit_mb,
    secret_env,
)
from falcon_platform.worker.server import DRAIN_SETTLE_S

READINESS_PATH = "/readyz"
LIVENESS_PATH = "/healthz"


def drain_budget_s(settings: Settings) -> float:
    """Longest a worker takes from SIGTERM to exit (steps 2-5 in the module docstring)."""
    grace = settings.shutdown_grace_s
    batcher = min(grace, settings.inference_timeout_ms / 1000)
    return DRAIN_SETTLE_S + math.ceil(grace) + batcher + grace


def termination_grace_s(settings: Settings) -> int:
    """``terminationGracePeriodSeconds``: it counts from the start of the preStop hook."""
    return o.PRESTOP_SLEEP_S + math.ceil(drain_budget_s(settings)) + o.EXIT_MARGIN_S


def spool_size_mb(settings: Settings) -> int:
    """The spool volume's sizeLimit: the worker's byte budget (one worker per pod) + headroom."""
    budget = settings.request_log_disk_budget_mb
    return budget + max(o.SPOOL_HEADROOM_MIN_MB, math.ceil(budget * o.SPOOL_HEADROOM_FRACTION))


def _seconds(value: float) -> int:
    """Probe fields are whole seconds, at least 1."""
    return max(1, math.ceil(value))


def probes(spec: Spec) -> dict[str, dict[str, Any]]:
    """Startup (model load), readiness and liveness, timed like the supervisor's probes."""
    p = spec.probes

    def get(path: str) -> dict[str, Any]:
        return {"path": path, "port": o.PORT_NAME, "scheme": "HTTPS"}

    period, timeout = _seconds(p.period), _seconds(p.timeout)
    return {
        # Liveness waits for this: a worker loading and warming up its model is not hung.
        "startupProbe": {
            "httpGet": get(LIVENESS_PATH),
            "periodSeconds": period,
            "timeoutSeconds": timeout,
            "failureThreshold": math.ceil(p.startup_timeout / period),
        },
        "readinessProbe": {
            "httpGet": get(READINESS_PATH),
            "periodSeconds": period,
            "timeoutSeconds": timeout,
            "failureThreshold": p.failure_threshold,
            "successThreshold": 1,
        },
        "livenessProbe": {
            "httpGet": get(LIVENESS_PATH),
            "periodSeconds": period,
            "timeoutSeconds": timeout,
            "failureThreshold": p.failure_threshold,
        },
    }


def container_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": o.UID,
        "runAsGroup": o.UID,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": o.UID,
        "runAsGroup": o.UID,
        "fsGroup": o.UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def scratch_volumes(settings: Settings | None) -> list[tuple[str, str, int]]:
    """(name, mount path, sizeLimit MB) of the writable emptyDirs; the spool only for serving."""
    volumes = [("state", o.HOME, o.STATE_SIZE_MB), ("tmp", o.TMP, o.TMP_SIZE_MB)]
    if settings is not None:
        volumes.insert(1, ("spool", o.SPOOL, spool_size_mb(settings)))
    return volumes


def empty_dirs(volumes: list[tuple[str, str, int]]) -> list[dict[str, Any]]:
    return [{"name": n, "emptyDir": {"sizeLimit": f"{mb}Mi"}} for n, _, mb in volumes]


def mounts(volumes: list[tuple[str, str, int]]) -> list[dict[str, Any]]:
    return [{"name": n, "mountPath": path} for n, path, _ in volumes]


def worker_container(
    spec: Spec,
    settings: Settings,
    options: o.K8sOptions,
    names: Names,
    *,
    hash_label: str = o.DEPLOYMENT_HASH_LABEL,
) -> dict[str, Any]:
    memory = f"{pod_memory_limit_mb(settings, spec)}Mi"
    scratch = scratch_volumes(settings)
    ephemeral = sum(mb for _, _, mb in scratch)
    return {
        "name": o.CONTAINER,
        "image": options.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", "falcon_platform.worker"],
        "args": ["--host", "0.0.0.0", "--port", str(o.PORT)],
        "ports": [{"name": o.PORT_NAME, "containerPort": o.PORT, "protocol": "TCP"}],
        "envFrom": [{"configMapRef": {"name": names.settings}}],
        "env": downward_env(hash_label) + secret_env(names.secret),
        "resources": {
            "requests": {
                "cpu": options.cpu_request,
                "memory": memory,
                "ephemeral-storage": f"{ephemeral}Mi",
            },
            "limits": {"memory": memory},
        },
        **probes(spec),
        "lifecycle": {"preStop": {"sleep": {"seconds": o.PRESTOP_SLEEP_S}}},
        "securityContext": container_security(),
        "volumeMounts": [
            *mounts(scratch),
            {"name": "spec", "mountPath": o.SPEC_DIR, "readOnly": True},
            {"name": "tls", "mountPath": o.TLS_DIR, "readOnly": True},
        ],
    }


def pod_template(
    spec: Spec,
    settings: Settings,
    options: o.K8sOptions,
    names: Names,
    *,
    config_hash: str,
    hash_label: str = o.DEPLOYMENT_HASH_LABEL,
) -> dict[str, Any]:
    """The serving pod template (labels, annotations, spec); ``hash_label`` is the label
    the workload's controller puts the ReplicaSet's hash in (one release)."""
    selector = names.selector("server")
    return {
        "metadata": {
            "labels": names.labels("server"),
            "annotations": {o.CONFIG_HASH_ANNOTATION: config_hash},
        },
        "spec": {
            "serviceAccountName": names.service_account,
            "automountServiceAccountToken": False,
            # Service links would put FALCON_PORT=tcp://... (from a Service named "falcon")
            # into the worker's environment, where FALCON_* names are settings.
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": termination_grace_s(settings),
            "securityContext": pod_security(),
            "topologySpreadConstraints": [
                {
                    "maxSkew": 1,
                    "topologyKey": "kubernetes.io/hostname",
                    "whenUnsatisfiable": "DoNotSchedule",
                    "nodeTaintsPolicy": "Honor",
                    "labelSelector": {"matchLabels": selector},
                    "matchLabelKeys": [hash_label],
                },
                {
                    "maxSkew": 1,
                    "topologyKey": "topology.kubernetes.io/zone",
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": selector},
                    "matchLabelKeys": [hash_label],
                },
            ],
            "containers": [worker_container(spec, settings, options, names, hash_label=hash_label)],
            "volumes": [
                *empty_dirs(scratch_volumes(settings)),
                {
                    "name": "spec",
                    "configMap": {
                        "name": names.spec,
                        "items": [{"key": o.SPEC_FILE, "path": o.SPEC_FILE}],
                    },
                },
                {"name": "tls", "secret": {"secretName": names.tls, "defaultMode": 0o440}},
            ],
        },
    }
