"""Alert transitions to an Alertmanager-format webhook (``FALCON_ALERT_WEBHOOK_URL``).

The payload is what Alertmanager's ``webhook_config`` receivers get (version "4"), so
anything that already consumes Alertmanager (a chat bridge, PagerDuty's Events API
adapter, an incident bot, another Falcon's ``POST /alerts/webhook``) accepts Falcon's
local alerts unchanged::

    payload = alertmanager_payload(transitions, external_url="http://127.0.0.1:8001")
    send_webhook("https://hooks.example/alerts", payload)      # timeout + 3 tries
    send_transitions(settings, transitions)                   # what the supervisor calls

Building the payload is pure; only :func:`send_webhook` does I/O (httpx, retried with
tenacity on connection errors, 429 and 5xx).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from falcon_platform.config.settings import Settings
from falcon_platform.errors import DependencyError
from falcon_platform.observability.evaluator import AlertTransition

ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's "not ended yet"


def rfc3339(ts: float) -> str:
    """Epoch seconds -> ``2026-01-01T00:00:00.000Z``."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def fingerprint(labels: Mapping[str, str]) -> str:
    """A stable 16-hex-digit id of a label set (Alertmanager shows one per alert)."""
    text = "\x00".join(f"{k}\x01{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _common(maps: Sequence[Mapping[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    first = maps[0]
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in maps[1:])}


def alertmanager_payload(
    transitions: Sequence[AlertTransition],
    *,
    external_url: str = "",
    receiver: str = "falcon",
) -> dict[str, Any]:
    """The webhook body for a batch of transitions (one group, like one Alertmanager notify)."""
    alerts = [
        {
            "status": t.state,
            "labels": dict(t.labels),
            "annotations": dict(t.annotations),
            "startsAt": rfc3339(t.active_since),
            "endsAt": rfc3339(t.ts) if t.state == "resolved" else ZERO_TIME,
            "generatorURL": f"{external_url}/alerts" if external_url else "",
            "fingerprint": fingerprint(t.labels),
        }
        for t in transitions
    ]
    labels = [t.labels for t in transitions]
    common_labels = _common(labels)
    return {
        "version": "4",
        "groupKey": "{}:{"
        + ", ".join(f'{k}="{v}"' for k, v in sorted(common_labels.items()))
        + "}",
        "truncatedAlerts": 0,
        "status": "firing" if any(t.state == "firing" for t in transitions) else "resolved",
        "receiver": receiver,
        "groupLabels": {},
        "commonLabels": common_labels,
        "commonAnnotations": _common([t.annotations for t in transitions]),
        "externalURL": external_url,
        "alerts": alerts,
    }


class _RetryableStatus(Exception):
    """The receiver answered 429 or 5xx: worth another try."""


def send_webhook(
    url: str,
    payload: Mapping[str, Any],
    *,
    timeout: float = 5.0,
    attempts: int = 3,
    transport: httpx.BaseTransport | None = None,
) -> None:
    """POST ``payload`` as JSON; retry transient failures; raise DependencyError at the end."""
    retrying = Retrying(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=0.2, max=2.0),
        retry=retry_if_exception_type((httpx.TransportError, _RetryableStatus)),
        reraise=False,
    )
    with httpx.Client(timeout=timeout, transport=transport) as client:
        try:
            for attempt in retrying:
                with attempt:
                    response = client.post(url, json=dict(payload))
                    if response.status_code == 429 or response.status_code >= 500:
                        raise _RetryableStatus(f"HTTP {response.status_code}")
                    if response.status_code >= 400:
                        raise DependencyError(
                            f"alert webhook {url} refused the payload: HTTP {response.status_code} "
                            f"{response.text[:200]!r}; check FALCON_ALERT_WEBHOOK_URL and the receiver"
                        )
        except RetryError as exc:
            cause = exc.last_attempt.exception()
            raise DependencyError(
                f"alert webhook {url} failed after {attempts} tries ({cause!r}); "
                "alerts are still journalled: see `falcon events --kind alert_firing`"
            ) from None


def send_transitions(
    settings: Settings,
    transitions: Sequence[AlertTransition],
    *,
    transport: httpx.BaseTransport | None = None,
) -> None:
    """What the supervisor calls after each evaluation that changed something."""
    if not settings.alert_webhook_url or not transitions:
        return
    host = settings.control_host
    external = "" if settings.control_socket else f"http://{host}:{settings.control_port}"
    send_webhook(
        settings.alert_webhook_url,
        alertmanager_payload(transitions, external_url=external),
        transport=transport,
    )
