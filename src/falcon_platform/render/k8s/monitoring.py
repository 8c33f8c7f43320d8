"""Prometheus Operator and Grafana objects: ServiceMonitor, PrometheusRule, dashboard ConfigMap.

The rule groups are exactly what ``falcon render prometheus`` writes (``rule_groups``), and
the dashboard exactly what ``falcon render grafana`` writes: one definition, three outputs.
"""

from __future__ import annotations

from typing import Any

from falcon_platform.config.spec import Spec
from falcon_platform.render.grafana import DASHBOARD_FILENAME, render_dashboard
from falcon_platform.render.k8s import options as o
from falcon_platform.render.k8s.names import Names
from falcon_platform.render.prometheus import rule_groups


def service_monitor(spec: Spec, names: Names) -> dict[str, Any]:
    """Scrape every serving pod's ``/metrics`` over TLS, checked against the Secret's CA.

    The certificate must name ``<service>`` (and usually ``<service>.<namespace>.svc``)."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": names.service, "labels": names.labels("server")},
        "spec": {
            "selector": {"matchLabels": names.selector("server")},
            "endpoints": [
                {
                    "port": o.PORT_NAME,
                    "path": "/metrics",
                    "scheme": "https",
                    "interval": f"{o.SCRAPE_INTERVAL_S}s",
                    "tlsConfig": {
                        "ca": {"secret": {"name": names.tls, "key": "ca.crt"}},
                        "serverName": names.service,
                    },
                }
            ],
        },
    }


def prometheus_rule(spec: Spec, names: Names) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": names.service, "labels": names.labels("server")},
        "spec": {"groups": rule_groups(spec)},
    }


def dashboard_config_map(spec: Spec, names: Names) -> dict[str, Any]:
    """Picked up by the Grafana sidecar (kube-prometheus-stack's default label)."""
    labels = {**names.labels("server"), o.GRAFANA_DASHBOARD_LABEL: "1"}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": names.dashboard, "labels": labels},
        "data": {DASHBOARD_FILENAME: render_dashboard(spec)},
    }
