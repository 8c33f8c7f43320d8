"""A pod's ``FALCON_*`` environment, derived from the settings model (never typed by hand).

Every field of :class:`~falcon_platform.config.settings.Settings` falls in one class:

- **secret** (``SecretStr`` fields): a ``secretKeyRef`` to the Secret, never a value;
- **pod-owned**: the renderer decides them, because the manifests depend on them (home,
  spec path, TLS files, one worker per pod, the memory limit the container gets, the drain
  time the grace period covers);
- **from the pod**: the worker id (pod name) and release (ReplicaSet hash) via the downward
  API; host and port are command-line arguments;
- **supervisor-only**: meaningless in a pod (control API, zygote, SLI store, webhook), and
  ``faults``, which a render never carries into a cluster;
- everything else passes through when the environment's settings differ from the default::

    settings_data(settings, spec)   # {"FALCON_PROFILE": "prod", "FALCON_WORKERS": "1", ...}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from falcon_platform.config.memory import memory_limits
from falcon_platform.config.settings import SECRET_FIELDS, Settings
from falcon_platform.config.spec import Spec
from falcon_platform.errors import ConfigError
from falcon_platform.render.k8s import options as o

PREFIX: str = str(Settings.model_config.get("env_prefix", "FALCON_"))

FROM_POD = frozenset({"host", "port", "worker_id", "release"})
SUPERVISOR_ONLY = frozenset(
    {
        "control_host",
        "control_port",
        "control_socket",
        "memory_enforcement",
        "zygote",
        "alert_webhook_url",
        "sli_scrape_interval_s",
        "sli_retention_days",
        "faults",
    }
)
POD_OWNED = frozenset(
    {
        "profile",
        "home",
        "spec_path",
        "model_path",
        "tls_certfile",
        "tls_keyfile",
        "workers",
        "memory_limit_mb",
        "memory_soft_limit_percent",
        "shutdown_grace_s",
        "inference_timeout_ms",
        "request_log_disk_budget_mb",
    }
)


def env_name(field: str) -> str:
    """``"memory_limit_mb"`` -> ``"FALCON_MEMORY_LIMIT_MB"``; refuses a name that is no setting."""
    if field not in Settings.model_fields:
        raise KeyError(f"{field!r} is not a field of Settings")
    return f"{PREFIX}{field.upper()}"


def field_name(variable: str) -> str:
    """Inverse of :func:`env_name`."""
    name = variable.removeprefix(PREFIX).lower()
    if not variable.startswith(PREFIX) or name not in Settings.model_fields:
        raise KeyError(f"{variable!r} is not a Falcon setting")
    return name


def text(value: Any) -> str:
    """A setting as the environment spells it (pydantic-settings parses it back)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, Path):
        return value.as_posix()
    return str(value)


def pod_memory_limit_mb(settings: Settings, spec: Spec) -> int:
    """The container's memory limit: the spec's, unless the environment's settings override
    it (the same arithmetic a worker uses for the limit it exports)."""
    limits = memory_limits(
        spec.workers.memory_limit_mb,
        spec.workers.memory_soft_limit_percent,
        settings.memory_limit_mb,
        settings.memory_soft_limit_percent,
    )
    if limits.limit_bytes is None:
        raise ConfigError(
            f"profile {settings.profile}: the memory limit is 0 (off), and a pod without one "
            "takes its node down when it leaks. Set workers.memory_limit_mb in falcon.yaml (or "
            "FALCON_MEMORY_LIMIT_MB for this profile) to a positive number of MB, e.g. 512."
        )
    return limits.limit_mb


def soft_limit_percent(settings: Settings, spec: Spec) -> int:
    if settings.memory_soft_limit_percent is not None:
        return settings.memory_soft_limit_percent
    return spec.workers.memory_soft_limit_percent


def settings_data(settings: Settings, spec: Spec) -> dict[str, str]:
    """The ConfigMap's data: pod-owned values, then the non-default pass-through settings."""
    owned: dict[str, Any] = {
        "profile": settings.profile,
        "home": o.HOME,
        "spec_path": f"{o.SPEC_DIR}/{o.SPEC_FILE}",
        "model_path": o.MODEL_DIR,
        "tls_certfile": f"{o.TLS_DIR}/tls.crt",
        "tls_keyfile": f"{o.TLS_DIR}/tls.key",
        "workers": 1,  # Kubernetes is the supervisor: one worker per pod
        "memory_limit_mb": pod_memory_limit_mb(settings, spec),
        "memory_soft_limit_percent": soft_limit_percent(settings, spec),
        "shutdown_grace_s": settings.shutdown_grace_s,
        "inference_timeout_ms": settings.inference_timeout_ms,
        "request_log_disk_budget_mb": settings.request_log_disk_budget_mb,
    }
    assert set(owned) == POD_OWNED
    data = {env_name(k): text(v) for k, v in owned.items()}
    skip = POD_OWNED | FROM_POD | SUPERVISOR_ONLY | SECRET_FIELDS
    for name, info in Settings.model_fields.items():
        if name in skip:
            continue
        value = getattr(settings, name)
        if value != info.default:
            data[env_name(name)] = text(value)
    return dict(sorted(data.items()))


def secret_env(secret: str, fields: frozenset[str] = SECRET_FIELDS) -> list[dict[str, Any]]:
    """One ``secretKeyRef`` per secret setting; the key is the variable's own name.

    Optional, so a dev namespace runs without Redis or PostgreSQL; the prod gate in the
    worker refuses to start without the admin token and the database password."""
    return [
        {
            "name": env_name(f),
            "valueFrom": {"secretKeyRef": {"name": secret, "key": env_name(f), "optional": True}},
        }
        for f in sorted(fields)
    ]


def downward_env(hash_label: str = "pod-template-hash") -> list[dict[str, Any]]:
    """Worker id = the pod's name; release = its ReplicaSet's pod-template hash (a revision),
    from the label its controller writes it in (``rollouts-pod-template-hash`` for Argo)."""
    return [
        {"name": env_name("worker_id"), "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {
            "name": env_name("release"),
            "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{hash_label}']"}},
        },
    ]
