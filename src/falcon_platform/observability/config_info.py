"""The config info metric: ``falcon_config_info{fingerprint, profile} 1``.

Serving (worker ``/metrics``) and the supervisor register it on their registry::

    register_config_info(registry, fp, labels={"worker": "w1", "release": "r3"})

A change of the ``fingerprint`` label between scrapes is a config change; the
alerting rules use ``changes()`` over it.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Gauge

from falcon_platform.config.fingerprint import Fingerprint
from falcon_platform.observability.names import CONFIG_INFO


def register_config_info(
    registry: CollectorRegistry,
    fp: Fingerprint,
    *,
    labels: Mapping[str, str] | None = None,
) -> Gauge:
    """Register the info gauge (value 1) labelled with the short fingerprint and profile."""
    extra = dict(labels or {})
    gauge = Gauge(
        CONFIG_INFO,
        "Effective configuration: fingerprint (sha256, first 12 hex) and profile; always 1.",
        labelnames=(*extra, "fingerprint", "profile"),
        registry=registry,
    )
    gauge.labels(**extra, fingerprint=fp.short, profile=fp.profile).set(1)
    return gauge
