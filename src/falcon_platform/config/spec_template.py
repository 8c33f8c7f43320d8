"""Render the commented default ``falcon.yaml`` from the spec model itself.

Generated rather than hand-kept so a field added to ``config/spec.py`` cannot be
missing from the shipped file (a unit test compares them)::

    falcon config template > falcon.yaml

Comments come from each section's docstring and each field's ``description``;
durations are written the Prometheus way (``5m``).
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from falcon_platform.config.spec import Spec, format_duration, parse_duration

HEADER = """\
# falcon.yaml: what an operator decides (SLOs, memory limits, alerts, canary, gates).
# Every value below is the default; delete what you do not change. Unknown keys are
# errors (with the closest valid key suggested). Durations: 500ms, 30s, 5m, 1h, 3d.
# Check before deploying:  falcon config check --profile prod --spec falcon.yaml
# Regenerate:              falcon config template > falcon.yaml
"""


# Section notes for the file (the model docstrings are for code readers).
SECTION_NOTES: dict[str, str] = {
    "slo": "Service level objectives (defaults from the seed postmortem's SLO table).",
    "workers": "Per-worker memory: hard limit (exit 137 'OOMKilled') and soft limit (graceful "
    "recycle). FALCON_MEMORY_LIMIT_MB overrides memory_limit_mb; prod refuses 0.",
    "restart": "Restart back-off like Kubernetes' CrashLoopBackOff.",
    "probes": "Liveness/readiness probes of each worker's admin socket.",
    "alerts": "Alert thresholds: memory, OOM kills, error rate, SLO burn rates (rendered to "
    "Prometheus rules and used by the local evaluator).",
    "canary": "Canary steps (percent of workers on the new release) and abort thresholds.",
    "gates": "Pre-deploy gates: this config check and a short load test watching RSS growth.",
    "loadtest": "`falcon loadtest run PROFILE`: open-model load (arrival rate per stage, latency "
    "from each request's scheduled start) and k6-like thresholds; a failed threshold exits 99. "
    "Profiles you write here are merged over these by name. `falcon loadtest capacity` "
    "searches the highest rate at which the slo section still holds.",
    "incidents": "When the supervisor opens incidents by itself (critical alert, crash loop, OOM "
    "burst, aborted rollout, no worker ready) and how it deduplicates them.",
}


def _is_duration(info: FieldInfo) -> bool:
    return any(getattr(m, "func", None) is parse_duration for m in info.metadata)


def _scalar(value: Any, duration: bool) -> str:
    if duration and isinstance(value, int | float):
        return f'"{format_duration(float(value))}"'
    if isinstance(value, BaseModel):
        return _flow(value)
    if isinstance(value, list):
        return "[]" if not value else ""
    dumped: str = yaml.safe_dump(value, default_flow_style=True).strip()
    return dumped.removesuffix("\n...").removesuffix(" ...").strip()


def _flow(model: BaseModel) -> str:
    parts = []
    for name, info in type(model).model_fields.items():
        parts.append(f"{name}: {_scalar(getattr(model, name), _is_duration(info))}")
    return "{" + ", ".join(parts) + "}"


def _comment(text: str | None) -> str:
    return f"  # {' '.join(text.split())}" if text else ""


def _section(model: BaseModel, indent: str) -> list[str]:
    lines: list[str] = []
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            doc = (type(value).__doc__ or "").strip().splitlines()
            note = SECTION_NOTES.get(name) if not indent else None
            lines.append("")
            if note or doc:
                lines.extend(f"{indent}# {part}" for part in textwrap.wrap(note or doc[0], 88))
            lines.append(f"{indent}{name}:")
            lines.extend(_section(value, indent + "  "))
        elif isinstance(value, dict) and value:
            lines.append(f"{indent}{name}:{_comment(info.description)}")
            for key, item in value.items():
                lines.append(f"{indent}  {key}:")
                lines.extend(_section(item, indent + "    "))
        elif isinstance(value, list) and value:
            lines.append(f"{indent}{name}:{_comment(info.description)}")
            lines.extend(
                f"{indent}  - {_flow(item) if isinstance(item, BaseModel) else json.dumps(item)}"
                for item in value
            )
        else:
            text = _scalar(value, _is_duration(info))
            lines.append(f"{indent}{name}: {text}{_comment(info.description)}")
    return lines


def render_spec_template(spec: Spec | None = None) -> str:
    """The commented YAML for ``spec`` (default ``Spec()``); parses back to the same spec."""
    body = _section(spec if spec is not None else Spec(), "")
    return HEADER + "\n".join(body).replace("\n\n\n", "\n\n") + "\n"
