"""Prometheus rule files rendered from the spec (pure: text in, text out).

::

    text = render_rules(load_spec(path))          # one YAML document, two rule groups
    write_atomic(Path("deploy/prometheus/falcon-rules.yml"), text)

Group ``falcon-slo`` holds the SLI recording rules and the alerts that read them (one
group, so an alert sees the recording rules of the same evaluation); ``falcon-runtime``
holds the direct alerts on supervisor and worker metrics. ``promtool check rules``
accepts the output (``tests/integration/test_promtool_rules.py``).
"""

from __future__ import annotations

from typing import Any

import yaml

from falcon_platform.config.spec import Spec, format_duration
from falcon_platform.observability.alert_defs import alert_defs, recording_rules

RULES_FILENAME = "falcon-rules.yml"
HEADER = (
    "# Rendered by `falcon render prometheus` from the spec (falcon.yaml). Do not edit:\n"
    "# change the spec and render again. Tested with promtool (tests/promtool/).\n"
)


class _Dumper(yaml.SafeDumper):
    """Multi-line PromQL as literal blocks, so the file reads like hand-written rules."""


def _str_representer(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str_representer)


def rule_groups(spec: Spec) -> list[dict[str, Any]]:
    """The rule groups as plain data (what the YAML file holds)."""
    groups: dict[str, list[dict[str, Any]]] = {"falcon-slo": [], "falcon-runtime": []}
    for rule in recording_rules(spec):
        groups["falcon-slo"].append({"record": rule.record, "expr": rule.expr})
    for d in alert_defs(spec):
        entry: dict[str, Any] = {"alert": d.name, "expr": d.condition.promql()}
        if d.for_s > 0:
            entry["for"] = format_duration(d.for_s)
        entry["labels"] = d.labels(spec.service)
        entry["annotations"] = d.annotations()
        groups[d.group].append(entry)
    return [{"name": name, "rules": rules} for name, rules in groups.items()]


def render_rules(spec: Spec) -> str:
    """The whole rule file as YAML text."""
    body = yaml.dump(
        {"groups": rule_groups(spec)},
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        width=1000,
        allow_unicode=True,
    )
    return HEADER + body


def render_prometheus(spec: Spec) -> dict[str, str]:
    """File name -> text for ``falcon render prometheus``."""
    return {RULES_FILENAME: render_rules(spec)}
