"""What the Kubernetes renderer needs besides the spec and the settings: the cluster's side.

The spec (``falcon.yaml``) says what an operator decides about the service; ``Settings`` (one
per environment, from ``config/<env>.env`` and the environment) say how a worker runs. What
only a cluster has — the image, replica bounds, the namespace, the ports of the stores — is
here, with defaults that ``falcon render k8s`` can override::

    options = K8sOptions(image="registry.example/falcon:1.4.2")
    options.namespace("falcon", "prod")          # "falcon-prod"
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import get_args

from falcon_platform import __version__
from falcon_platform.config.settings import Profile

ENVIRONMENTS: tuple[str, ...] = get_args(Profile)  # ("dev", "staging", "prod"), one overlay each

# --- the pod's file system (read-only root; every writable path is a volume) -----------------
HOME = "/var/lib/falcon"  # FALCON_HOME: run/ (fingerprint salt), data/ (SQLite), spool/
SPOOL = f"{HOME}/spool"  # the request-log spool (Settings.spool_dir under HOME)
SPEC_DIR = "/etc/falcon/spec"  # the spec ConfigMap (not /etc/falcon: no mount inside a mount)
SPEC_FILE = "falcon.yaml"
TLS_DIR = "/etc/falcon/tls"  # a kubernetes.io/tls Secret: tls.crt, tls.key
MODEL_DIR = "/opt/falcon/model"  # baked into the image by the Dockerfile (same path there)
TMP = "/tmp"  # noqa: S108 - an emptyDir of the pod's own, not a shared /tmp
UID = 10001  # the image's non-root user (Dockerfile: useradd --uid 10001)

CONTAINER = "falcon"
PORT = 8000  # python -m falcon_platform.worker --port 8000
PORT_NAME = "https"  # TLS in the pod: the prod gate refuses a non-loopback bind without it
SERVICE_PORT = 443

# Kubernetes removes a terminating pod from the Service's endpoints while its preStop hook
# runs, but kube-proxy and ingress controllers learn it a few seconds later; the worker keeps
# serving for that long before SIGTERM closes its listener.
PRESTOP_SLEEP_S = 5
# After the worker's own drain bound, before the kubelet's SIGKILL: the interpreter's exit
# (freeing NumPy/scikit-learn took 2-3 s on the shared 2-core test machine).
EXIT_MARGIN_S = 5
# emptyDir headroom above the spool's byte budget: file-system blocks and lock files.
# Above sizeLimit the kubelet evicts the pod, so the worker's own 503 must come first.
SPOOL_HEADROOM_FRACTION = 0.1
SPOOL_HEADROOM_MIN_MB = 16
STATE_SIZE_MB = 1024  # run/ and data/: embedded SQLite (idempotency; the request log in dev)
TMP_SIZE_MB = 64

# Label keys (https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/)
NAME_LABEL = "app.kubernetes.io/name"
COMPONENT_LABEL = "app.kubernetes.io/component"
CONFIG_HASH_ANNOTATION = "falcon/config-hash"
# The label a ReplicaSet's pods carry with their pod-template hash: a Deployment's controller
# writes the first, Argo Rollouts the second (its ReplicaSets carry no `pod-template-hash`).
DEPLOYMENT_HASH_LABEL = "pod-template-hash"
ROLLOUT_HASH_LABEL = "rollouts-pod-template-hash"

# --- Prometheus, as the ServiceMonitor scrapes it and the canary analysis queries it ---------
SCRAPE_INTERVAL_S = 15
# A rate needs two samples in its window; four scrapes tolerate one missed scrape.
ANALYSIS_WINDOW_S = 4 * SCRAPE_INTERVAL_S
# prometheus-operator's governing Service for a Prometheus in namespace `monitoring`.
DEFAULT_PROMETHEUS_URL = "http://prometheus-operated.monitoring.svc:9090"
GRAFANA_DASHBOARD_LABEL = "grafana_dashboard"  # the Grafana sidecar's default label


@dataclass(frozen=True)
class Replicas:
    """Bounds for the HorizontalPodAutoscaler of one environment."""

    min: int
    max: int

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.max:
            raise ValueError(f"replicas min={self.min} max={self.max}: need 1 <= min <= max")


DEFAULT_REPLICAS: Mapping[str, Replicas] = MappingProxyType(
    {"dev": Replicas(1, 2), "staging": Replicas(2, 4), "prod": Replicas(3, 12)}
)


@dataclass(frozen=True)
class K8sOptions:
    """The cluster's side of the render; everything else comes from the spec and settings."""

    image: str = f"falcon:{__version__}"
    replicas: Mapping[str, Replicas] = field(default_factory=lambda: DEFAULT_REPLICAS)
    # One worker is one event loop: a core. No CPU limit (throttling a busy loop stretches
    # every request in it); memory request = limit, so a node never promises more than it has.
    cpu_request: str = "1"
    cpu_target_percent: int = 70
    # The requests/s target of the optional component: about half the ~6,300 req/s one worker
    # served on one core with unique texts (docs/CAPACITY_PLAN.md), headroom for a lost pod.
    requests_per_second_per_pod: int = 3000
    redis_port: int = 6379
    postgres_port: int = 5432
    namespace_prefix: str | None = None  # None: the spec's service name
    # Where Argo Rollouts' controller queries Prometheus for the canary analysis.
    prometheus_url: str = DEFAULT_PROMETHEUS_URL
    # None: an Argo Rollout when the spec has canary steps, else a Deployment; False: always a
    # Deployment (a cluster without Argo Rollouts).
    rollout: bool | None = None

    def uses_rollout(self, steps: int) -> bool:
        return bool(steps) if self.rollout is None else self.rollout and bool(steps)

    def namespace(self, service: str, env: str) -> str:
        return f"{self.namespace_prefix or service}-{env}"

    def replicas_for(self, env: str) -> Replicas:
        return self.replicas.get(env, DEFAULT_REPLICAS["dev"])
