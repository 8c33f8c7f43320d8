"""The Grafana dashboard rendered from the spec (pure: spec in, JSON text out).

Plain JSON rather than grafanalib/grafana-foundation-sdk: the dashboard is small, the
JSON model is stable, and a golden file pins every byte (``tests/golden/grafana``)::

    text = render_dashboard(spec)          # import it in Grafana (Dashboards -> Import)
    write_atomic(Path("deploy/grafana/falcon-dashboard.json"), text)

The ``${datasource}`` variable picks the Prometheus data source; ``$release`` filters
the per-release panels (stable vs canary). Thresholds (SLO, burn factors, memory
percent) come from the spec, and queries use ``observability.names`` and the recording
rules of ``observability.alert_defs``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from falcon_platform.config.spec import Spec, format_duration
from falcon_platform.observability import names
from falcon_platform.observability.alert_defs import LATENCY_WINDOW
from falcon_platform.observability.conditions import (
    ERROR_STATUS_REGEX,
    error_ratio_rule,
    number,
    requests_rule,
)

DASHBOARD_FILENAME = "falcon-dashboard.json"
SCHEMA_VERSION = 39  # Grafana 10.4 and 11.x import it as is
DS = {"type": "prometheus", "uid": "${datasource}"}
RI = "$__rate_interval"
REL = 'release=~"$release"'


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    targets: list[Target]
    unit: str = "short"
    kind: str = "timeseries"  # or "stat"
    width: int = 8
    thresholds: list[tuple[float, str]] = field(default_factory=list)  # (value, color) steps


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
    steps += [{"color": color, "value": value} for value, color in panel.thresholds]
    defaults: dict[str, Any] = {
        "unit": panel.unit,
        "thresholds": {"mode": "absolute", "steps": steps},
    }
    options: dict[str, Any]
    if panel.kind == "stat":
        options = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
        }
    else:
        defaults["custom"] = {"thresholdsStyle": {"mode": "line" if panel.thresholds else "off"}}
        options = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DS,
        "gridPos": {"h": 8, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
        "targets": [
            {
                "datasource": DS,
                "refId": chr(ord("A") + i),
                "expr": t.expr,
                "legendFormat": t.legend or "__auto",
            }
            for i, t in enumerate(panel.targets)
        ],
    }


def _error_ratio(by: str) -> str:
    return (
        f'sum by ({by}) (rate({names.REQUESTS}{{status=~"{ERROR_STATUS_REGEX}", {REL}}}[{RI}]))\n'
        f"/ sum by ({by}) (rate({names.REQUESTS}{{{REL}}}[{RI}]))"
    )


def _quantile(q: float, metric: str, by: str = "le") -> str:
    return f"histogram_quantile({q}, sum by ({by}) (rate({metric}_bucket{{{REL}}}[{RI}])))"


def dashboard_rows(spec: Spec) -> list[tuple[str, list[Panel]]]:
    """The dashboard's rows and panels as plain data."""
    budget = float(number(1 - spec.slo.availability))
    slo_window = spec.slo.window
    burns = spec.alerts.burn_windows
    latency_slo = spec.slo.latency_p95_ms / 1000
    burn_targets = [
        Target(f"{error_ratio_rule(w)} / {number(budget)}", f"burn rate over {rule_window}")
        for w, rule_window in sorted(
            {(b.long, _w(b.long)) for b in burns} | {(b.short, _w(b.short)) for b in burns}
        )
    ]
    return [
        (
            "Service level",
            [
                Panel(
                    "Availability (SLO window)",
                    f"Share of non-5xx requests over the SLO window; objective {number(spec.slo.availability)}.",
                    [Target(f"1 - {error_ratio_rule(slo_window)}", "availability")],
                    "percentunit",
                    "stat",
                ),
                Panel(
                    "Error budget remaining",
                    "1 - (error ratio over the SLO window / budget). Below 0: the SLO is broken.",
                    [
                        Target(
                            f"1 - {error_ratio_rule(slo_window)} / {number(budget)}",
                            "budget remaining",
                        )
                    ],
                    "percentunit",
                    "stat",
                ),
                Panel(
                    "Burn rate",
                    "Error ratio divided by the budget, per alert window; lines at the page and ticket factors.",
                    burn_targets,
                    "short",
                    thresholds=[
                        (b.factor, "red" if b.severity == "page" else "orange") for b in burns
                    ],
                ),
            ],
        ),
        (
            "Traffic and errors",
            [
                Panel(
                    "Request rate by release",
                    "Requests per second, all statuses.",
                    [
                        Target(
                            f"sum by (release) (rate({names.REQUESTS}{{{REL}}}[{RI}]))",
                            "{{release}}",
                        ),
                        Target(requests_rule(spec.alerts.error_rate_window), "service total"),
                    ],
                    "reqps",
                ),
                Panel(
                    "Error ratio by release",
                    f"5xx share; the critical alert fires above {number(spec.alerts.error_rate_critical * 100)}%.",
                    [Target(_error_ratio("release"), "{{release}}")],
                    "percentunit",
                    thresholds=[(spec.alerts.error_rate_critical, "red")],
                ),
                Panel(
                    "Latency p50 / p95 / p99",
                    f"Request latency; the SLO is p95 < {number(spec.slo.latency_p95_ms)} ms.",
                    [
                        Target(_quantile(q, names.REQUEST_DURATION), f"p{round(q * 100)}")
                        for q in (0.5, 0.95, 0.99)
                    ],
                    "s",
                    thresholds=[(latency_slo, "red")],
                ),
            ],
        ),
        (
            "Workers",
            [
                Panel(
                    "Memory per worker vs limit",
                    f"Resident memory sampled by the supervisor; warning at {number(spec.alerts.memory_percent)}% of the limit.",
                    [
                        Target(
                            f"max by (worker, release) ({names.WORKER_RSS}{{{REL}}})",
                            "{{worker}} ({{release}}) RSS",
                        ),
                        Target(
                            f"max by (worker, release) ({names.MEMORY_LIMIT}{{{REL}}}) > 0",
                            "{{worker}} limit",
                        ),
                    ],
                    "bytes",
                ),
                Panel(
                    "Restarts and OOM kills",
                    "Worker restarts and OOM kills per interval.",
                    [
                        Target(
                            f"sum by (worker) (increase({names.WORKER_RESTARTS}{{{REL}}}[{RI}]))",
                            "{{worker}} restarts",
                        ),
                        Target(
                            f"sum by (worker) (increase({names.WORKER_OOM_KILLS}{{{REL}}}[{RI}]))",
                            "{{worker}} OOM kills",
                        ),
                    ],
                    "short",
                    thresholds=[(1, "red")],
                ),
                Panel(
                    "Workers ready vs desired",
                    "Per release; 0 ready means every request fails.",
                    [
                        Target(
                            f"sum by (release) ({names.WORKERS_READY}{{{REL}}})",
                            "{{release}} ready",
                        ),
                        Target(
                            f"sum by (release) ({names.WORKERS_DESIRED}{{{REL}}})",
                            "{{release}} desired",
                        ),
                    ],
                    "short",
                ),
            ],
        ),
        (
            "Batching and cache",
            [
                Panel(
                    "Batch size",
                    "Items per model call (p50, p95) from the micro-batcher.",
                    [
                        Target(_quantile(q, names.BATCH_SIZE), f"p{round(q * 100)}")
                        for q in (0.5, 0.95)
                    ],
                    "short",
                ),
                Panel(
                    "Queue depth",
                    "Requests waiting for the batcher, per worker.",
                    [Target(f"sum by (worker) ({names.QUEUE_DEPTH}{{{REL}}})", "{{worker}}")],
                    "short",
                ),
                Panel(
                    "Cache hit ratio",
                    "Response-cache hits over lookups.",
                    [
                        Target(
                            f"sum(rate({names.CACHE_HITS}{{{REL}}}[{RI}]))\n/ (sum(rate({names.CACHE_HITS}{{{REL}}}[{RI}])) + sum(rate({names.CACHE_MISSES}{{{REL}}}[{RI}])))",
                            "hit ratio",
                        )
                    ],
                    "percentunit",
                ),
            ],
        ),
        (
            "Releases (canary vs stable)",
            [
                Panel(
                    "p95 latency by release",
                    "Compare the canary with the stable release.",
                    [Target(_quantile(0.95, names.REQUEST_DURATION, "le, release"), "{{release}}")],
                    "s",
                    thresholds=[(latency_slo, "red")],
                ),
                Panel(
                    "Error ratio by release (5m)",
                    "The canary judge aborts above its error threshold.",
                    [
                        Target(
                            _error_ratio("release").replace(RI, _w(LATENCY_WINDOW)), "{{release}}"
                        )
                    ],
                    "percentunit",
                    thresholds=[(spec.canary.abort_error_rate, "red")],
                ),
                Panel(
                    "Memory by release (max per worker)",
                    "A leak shows as one release climbing.",
                    [Target(f"max by (release) ({names.WORKER_RSS}{{{REL}}})", "{{release}}")],
                    "bytes",
                ),
            ],
        ),
    ]


def _w(seconds: float) -> str:
    return format_duration(seconds)


def dashboard(spec: Spec) -> dict[str, Any]:
    """The dashboard JSON model as a dict."""
    panels: list[dict[str, Any]] = []
    y, panel_id = 0, 1
    for title, row in dashboard_rows(spec):
        panels.append(
            {
                "id": panel_id,
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        panel_id, y, x = panel_id + 1, y + 1, 0
        for panel in row:
            panels.append(_panel_json(panel, panel_id, x, y))
            panel_id, x = panel_id + 1, x + panel.width
            if x >= 24:
                x, y = 0, y + 8
        if x:
            y += 8
    return {
        "uid": f"{spec.service}-overview",
        "title": f"Falcon: {spec.service}",
        "description": "Rendered by `falcon render grafana` from the spec; do not edit by hand.",
        "tags": ["falcon", "slo"],
        "timezone": "utc",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "annotations": {"list": []},
        "links": [],
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                    "refresh": 1,
                    "regex": "",
                    "options": [],
                },
                {
                    "name": "release",
                    "label": "Release",
                    "type": "query",
                    "datasource": DS,
                    "definition": f"label_values({names.REQUESTS}, release)",
                    "query": {
                        "query": f"label_values({names.REQUESTS}, release)",
                        "refId": "release",
                    },
                    "includeAll": True,
                    "multi": True,
                    "allValue": ".*",
                    "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                    "refresh": 2,
                    "sort": 1,
                    "hide": 0,
                    "options": [],
                },
            ]
        },
        "panels": panels,
    }


def render_dashboard(spec: Spec) -> str:
    """The dashboard as JSON text (stable key order, trailing newline)."""
    return json.dumps(dashboard(spec), indent=2, ensure_ascii=False) + "\n"


def render_grafana(spec: Spec) -> dict[str, str]:
    """File name -> text for ``falcon render grafana``."""
    return {DASHBOARD_FILENAME: render_dashboard(spec)}
