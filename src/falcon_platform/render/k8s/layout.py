"""The Kustomize layout: ``base/`` (Falcon's defaults) + one overlay per environment.

Each environment's objects are rendered whole, in Python (:func:`manifests`); an overlay is
the difference between them and the base, as RFC 6902 JSON patches (``jsonpatch``), plus its
Namespace. So ``kubectl kustomize overlays/prod`` builds exactly ``manifests(..., "prod")``
(tested), and what an overlay changes is listed in its ``patches/``::

    files = render_layout(spec, {"prod": load_settings(profile="prod")}, K8sOptions(image=...))
    for path, text in files.items():
        write_atomic(out / path, text)
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jsonpatch

from falcon_platform.config.settings import Settings
from falcon_platform.config.spec import Spec
from falcon_platform.config.spec_template import render_spec_template
from falcon_platform.errors import ConfigError
from falcon_platform.render.k8s import analysis, monitoring, network
from falcon_platform.render.k8s import options as o
from falcon_platform.render.k8s.cluster_rules import cluster_rule
from falcon_platform.render.k8s.migrations import migration_job
from falcon_platform.render.k8s.names import Names
from falcon_platform.render.k8s.pod import pod_template
from falcon_platform.render.k8s.settings_env import settings_data
from falcon_platform.render.k8s.workload import (
    WorkloadRef,
    autoscaler,
    disruption_budget,
    requests_per_second_metric,
    serving_rollout,
    serving_workload,
)
from falcon_platform.render.k8s.yamltext import dump_all, dump_one

HEADER = (
    "# Rendered by `falcon render k8s` from falcon.yaml and the profile's settings.\n"
    "# Do not edit: change the spec or settings and render again (docs/KUBERNETES.md).\n"
)
KUSTOMIZE_API = "kustomize.config.k8s.io/v1beta1"
RPS_COMPONENT = "requests-per-second"
_IMAGE = re.compile(
    r"^[a-z0-9][a-z0-9._:/-]*(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@sha256:[0-9a-f]{64})?$"
)


@dataclass(frozen=True)
class Resource:
    """One object and the file it lives in (stable across releases, unlike a Job's name)."""

    filename: str
    obj: dict[str, Any]

    @property
    def key(self) -> tuple[str, str]:
        return self.obj["kind"], self.obj["metadata"]["name"]


def check_prometheus_url(url: str) -> None:
    """Argo's controller needs an absolute URL (scheme and host) to query."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"Prometheus URL {url!r} is not an http(s) URL with a host: pass --prometheus-url "
            f"like {o.DEFAULT_PROMETHEUS_URL}"
        )


def check_image(image: str) -> None:
    """A pinned image: a tag other than ``latest``, or a digest."""
    last = image.rsplit("/", 1)[-1]
    pinned = "@sha256:" in image or (":" in last and not last.endswith(":latest"))
    if not _IMAGE.match(image) or not pinned:
        raise ConfigError(
            f"image {image!r} is not pinned: a pod restarted next week would run whatever "
            "'latest' is then. Pass --image with a version tag or a digest, e.g. "
            "registry.example/falcon:0.1.0 or registry.example/falcon@sha256:<64 hex>."
        )


def config_hash(settings_map: Mapping[str, str], spec_text: str) -> str:
    """Changes when the settings or the spec change, so the pods roll (a ConfigMap does not
    restart the pods that read it)."""
    payload = json.dumps(dict(settings_map), sort_keys=True) + "\n" + spec_text
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def resources(
    spec: Spec, settings: Settings, options: o.K8sOptions, replicas: o.Replicas
) -> list[Resource]:
    """Every object of one environment, without a namespace (the overlay sets it)."""
    names = Names(spec.service)
    data = settings_data(settings, spec)
    spec_text = render_spec_template(spec)
    rollout = options.uses_rollout(len(spec.canary.steps))
    template = pod_template(
        spec,
        settings,
        options,
        names,
        config_hash=config_hash(data, spec_text),
        hash_label=o.ROLLOUT_HASH_LABEL if rollout else o.DEPLOYMENT_HASH_LABEL,
    )
    if rollout:
        pauses = [step.pause for step in spec.canary.steps]
        workload_files = [
            Resource("rollout.yaml", serving_rollout(names, template, spec.canary)),
            Resource(
                "analysistemplate-canary.yaml",
                analysis.canary_analysis(spec.canary, names, options, pauses),
            ),
        ]
        if spec.canary.min_requests > 0:
            workload_files.append(
                Resource(
                    "analysistemplate-canary-traffic.yaml",
                    analysis.canary_traffic(spec.canary, names, options),
                )
            )
    else:
        workload_files = [Resource("deployment.yaml", serving_workload(names, template))]
    workload = workload_files[0].obj
    return [
        Resource("serviceaccount.yaml", network.service_account(names)),
        Resource(
            "configmap-settings.yaml",
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": names.settings, "labels": names.labels("server")},
                "data": data,
            },
        ),
        Resource(
            "configmap-spec.yaml",
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": names.spec, "labels": names.labels("server")},
                "data": {o.SPEC_FILE: spec_text},
            },
        ),
        *workload_files,
        Resource("service.yaml", network.service(names)),
        Resource(
            "hpa.yaml",
            autoscaler(names, WorkloadRef.of(workload), replicas, options.cpu_target_percent),
        ),
        Resource("pdb.yaml", disruption_budget(names)),
        Resource("networkpolicy.yaml", network.serving_policy(names, options)),
        Resource("networkpolicy-db-upgrade.yaml", network.migrate_policy(names, options)),
        Resource("job-db-upgrade.yaml", migration_job(names, options)),
        Resource("servicemonitor.yaml", monitoring.service_monitor(spec, names)),
        Resource("prometheusrule.yaml", monitoring.prometheus_rule(spec, names)),
        Resource("prometheusrule-kubernetes.yaml", cluster_rule(spec, names, rollout=rollout)),
        Resource("configmap-dashboard.yaml", monitoring.dashboard_config_map(spec, names)),
    ]


def manifests(
    spec: Spec, settings: Settings, options: o.K8sOptions, env: str
) -> list[dict[str, Any]]:
    """One environment's objects as ``kubectl kustomize overlays/<env>`` builds them."""
    check_image(options.image)
    check_prometheus_url(options.prometheus_url)
    namespace = options.namespace(spec.service, env)
    objects = [network.namespace(namespace)]
    for r in resources(spec, settings, options, options.replicas_for(env)):
        obj = copy.deepcopy(r.obj)
        obj["metadata"]["namespace"] = namespace
        objects.append(obj)
    return objects


def base_settings() -> Settings:
    """Falcon's built-in defaults, read from the model alone (not from this environment)."""
    return Settings.model_construct()


def _kustomization(**fields: Any) -> dict[str, Any]:
    return {"apiVersion": KUSTOMIZE_API, "kind": "Kustomization", **fields}


def _patch_file(resource: Resource) -> str:
    return f"patches/{resource.filename}"


def overlay_files(
    spec: Spec, settings: Settings, options: o.K8sOptions, env: str, base: list[Resource]
) -> dict[str, str]:
    """``overlays/<env>/``: the Namespace and one JSON patch per object that differs."""
    namespace = options.namespace(spec.service, env)
    mine = {r.key: r for r in resources(spec, settings, options, options.replicas_for(env))}
    if set(mine) != {r.key for r in base}:
        raise AssertionError("an environment renders other objects than the base")
    files: dict[str, str] = {"namespace.yaml": dump_one(network.namespace(namespace))}
    patches: list[dict[str, Any]] = []
    for r in base:
        ops = jsonpatch.make_patch(r.obj, mine[r.key].obj).patch
        if not ops:
            continue
        files[_patch_file(r)] = dump_one(ops)
        kind, name = r.key
        patches.append({"path": _patch_file(r), "target": {"kind": kind, "name": name}})
    fields: dict[str, Any] = {"namespace": namespace, "resources": ["../../base", "namespace.yaml"]}
    if patches:
        fields["patches"] = patches
    files["kustomization.yaml"] = dump_one(_kustomization(**fields))
    return {f"overlays/{env}/{name}": HEADER + text for name, text in sorted(files.items())}


def component_files(spec: Spec, options: o.K8sOptions) -> dict[str, str]:
    """``components/requests-per-second``: adds the requests/s metric to the HPA (needs a
    Prometheus adapter serving ``falcon_requests_per_second``; docs/KUBERNETES.md)."""
    names = Names(spec.service)
    op = {
        "op": "add",
        "path": "/spec/metrics/-",
        "value": requests_per_second_metric(options.requests_per_second_per_pod),
    }
    component = {
        "apiVersion": "kustomize.config.k8s.io/v1alpha1",
        "kind": "Component",
        "patches": [
            {
                "target": {"kind": "HorizontalPodAutoscaler", "name": names.workload},
                "patch": dump_one([op]),
            }
        ],
    }
    return {f"components/{RPS_COMPONENT}/kustomization.yaml": HEADER + dump_one(component)}


def render_layout(
    spec: Spec, environments: Mapping[str, Settings], options: o.K8sOptions
) -> dict[str, str]:
    """Relative path -> text: ``base/``, ``overlays/<env>/`` for each given environment,
    ``components/``. Pure: the caller loads the settings and writes the files."""
    check_image(options.image)
    check_prometheus_url(options.prometheus_url)
    unknown = sorted(set(environments) - set(o.ENVIRONMENTS))
    if unknown:
        raise ConfigError(
            f"unknown environment {unknown[0]!r}: use one of {', '.join(o.ENVIRONMENTS)}"
        )
    base = resources(spec, base_settings(), options, options.replicas_for("dev"))
    files = {f"base/{r.filename}": HEADER + dump_one(r.obj) for r in base}
    files["base/kustomization.yaml"] = HEADER + dump_one(
        _kustomization(resources=[r.filename for r in base])
    )
    for env, settings in environments.items():
        if settings.profile != env:
            raise ConfigError(
                f"the settings given for {env} have FALCON_PROFILE={settings.profile}: "
                f"load them with profile={env!r}"
            )
        files.update(overlay_files(spec, settings, options, env, base))
    files.update(component_files(spec, options))
    return dict(sorted(files.items()))


def render_manifests(spec: Spec, settings: Settings, options: o.K8sOptions, env: str) -> str:
    """One environment as a multi-document YAML stream (``kubectl apply -f -``)."""
    return HEADER + dump_all(manifests(spec, settings, options, env))
