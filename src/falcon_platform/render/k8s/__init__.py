"""Falcon on Kubernetes, rendered from the spec: a Kustomize layout validated offline.

``falcon render k8s --out deploy/k8s`` writes ``base/`` + ``overlays/{dev,staging,prod}/`` +
``components/requests-per-second/``; docs/KUBERNETES.md says how to apply, upgrade and roll
back, and what each object is for. Modules, one concept each:

- ``options``: the cluster's side (image, replicas, paths in the pod, ports);
- ``settings_env``: the pod's ``FALCON_*`` environment, derived from the settings model;
- ``pod``: the serving pod (probes, drain and grace period, security context, volumes);
- ``workload``: an Argo Rollout (canary steps in the spec) or a Deployment, HPA, PDB;
- ``analysis``: the canary judge as Argo AnalysisTemplates, thresholds from ``canary:``;
- ``network``: Service, NetworkPolicies, ServiceAccount, Namespace;
- ``migrations``: the ``falcon db upgrade`` Job, once per release;
- ``monitoring``: ServiceMonitor, PrometheusRule (the rules of ``render/prometheus.py``),
  the Grafana dashboard ConfigMap;
- ``cluster_rules``: alerts only a cluster can raise (kube-state-metrics, Argo Rollouts);
- ``layout``: whole environments, the base and the overlays' JSON patches.
"""

from falcon_platform.render.k8s.layout import manifests, render_layout, render_manifests
from falcon_platform.render.k8s.options import ENVIRONMENTS, K8sOptions

__all__ = ["ENVIRONMENTS", "K8sOptions", "manifests", "render_layout", "render_manifests"]
