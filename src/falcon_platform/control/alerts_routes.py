"""The alerts part of the supervisor's control API (one ``APIRouter``).

``GET /alerts`` lists what the local evaluator has pending or firing, plus what an
external Prometheus/Alertmanager reported as firing. ``POST /alerts/webhook`` accepts
Alertmanager's webhook payload (version "4", admin token as a Bearer credential) and
journals each alert's state change as ``alert_firing``/``alert_resolved`` with
``source: alertmanager``, so incidents see both kinds of alerts in one timeline::

    router = create_alerts_router(lambda: evaluator, journal, admin_token)
    app = create_control_app(supervisor, journal, admin_token, extra_routers=[router])

Alertmanager side (``alertmanager.yml``)::

    receivers:
      - name: falcon
        webhook_configs:
          - url: http://127.0.0.1:8001/alerts/webhook
            http_config: {authorization: {credentials_file: /etc/falcon/admin_token}}
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Request
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from falcon_platform.control.auth import bearer_token, is_loopback
from falcon_platform.errors import InvalidInputError, UnauthorizedError
from falcon_platform.events.journal import EventJournal, EventKind
from falcon_platform.observability.evaluator import AlertEvaluator
from falcon_platform.observability.webhook import fingerprint


class AlertmanagerAlert(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: str | None = None  # Alertmanager's field names
    endsAt: str | None = None
    generatorURL: str | None = None
    fingerprint: str | None = None


class AlertmanagerWebhook(BaseModel):
    """Alertmanager's webhook body; unknown fields are kept, the version must be "4"."""

    model_config = ConfigDict(extra="allow")

    version: str
    status: Literal["firing", "resolved"]
    receiver: str = ""
    alerts: list[AlertmanagerAlert]


def create_alerts_router(
    get_evaluator: Callable[[], AlertEvaluator | None],
    journal: EventJournal,
    admin_token: str | SecretStr | None,
    *,
    clock: Callable[[], float] = time.time,
) -> APIRouter:
    """The router; ``get_evaluator`` may return None while the supervisor starts."""
    token = admin_token.get_secret_value() if isinstance(admin_token, SecretStr) else admin_token
    external: dict[str, dict[str, Any]] = {}  # fingerprint -> last firing alert from outside
    router = APIRouter(tags=["alerts"])

    def check_token(authorization: str | None) -> None:
        given = bearer_token(authorization)
        if not token or given is None or not secrets.compare_digest(given, token):
            raise UnauthorizedError(
                "POST /alerts/webhook needs the admin token as 'Authorization: Bearer <token>' "
                "(Alertmanager: http_config.authorization.credentials_file)"
            )

    @router.get("/alerts")
    async def list_alerts(
        request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> dict[str, Any]:
        if not is_loopback(request):
            check_token(authorization)
        evaluator = get_evaluator()
        local = [a.to_dict() | {"source": "local"} for a in evaluator.active()] if evaluator else []
        return {
            "evaluated_at": evaluator.last_evaluation if evaluator else None,
            "alerts": local + sorted(external.values(), key=lambda a: a["name"]),
        }

    @router.post(
        "/alerts/webhook",
        status_code=202,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": AlertmanagerWebhook.model_json_schema()}
                },
            }
        },
    )
    async def receive_webhook(
        request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> dict[str, Any]:
        check_token(authorization)  # before the body (ControlGuard checked it first, too)
        raw = await request.body()  # at most 1 MiB: ControlGuard caps it
        # Parsed and validated in a thread: the supervisor's loop runs probes and restarts.
        try:
            body = await asyncio.to_thread(AlertmanagerWebhook.model_validate_json, raw)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            where = ".".join(str(p) for p in errors[0]["loc"]) if errors else ""
            why = errors[0]["msg"] if errors else str(exc)
            raise InvalidInputError(
                f"not an Alertmanager webhook body: {where or 'body'}: {why}"
            ) from None
        if body.version != "4":
            raise InvalidInputError(
                f"Alertmanager webhook version {body.version!r} is not supported; send version 4"
            )
        journalled = 0
        now = clock()
        for alert in body.alerts:
            key = alert.fingerprint or fingerprint(alert.labels)
            was_firing = key in external
            entry = {
                "name": alert.labels.get("alertname", "unknown"),
                "severity": alert.labels.get("severity", ""),
                "state": alert.status,
                "labels": alert.labels,
                "annotations": alert.annotations,
                "starts_at": alert.startsAt,
                "ends_at": alert.endsAt,
                "fingerprint": key,
                "receiver": body.receiver,
                "source": "alertmanager",
            }
            if alert.status == "firing":
                external[key] = entry
                if was_firing:
                    continue  # Alertmanager repeats firing alerts; journal the change only
            else:
                external.pop(key, None)
            journal.record(
                EventKind.ALERT_FIRING if alert.status == "firing" else EventKind.ALERT_RESOLVED,
                release=alert.labels.get("release"),
                worker=alert.labels.get("worker"),
                details=entry,
                ts=now,
            )
            journalled += 1
        return {"received": len(body.alerts), "journalled": journalled}

    return router
