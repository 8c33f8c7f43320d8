"""Parts other areas plug into the supervisor: the alert evaluator, its API, its webhook.

The supervisor only knows ``PeriodicTask`` and FastAPI routers; this module builds them
from ``observability`` so the supervisor loop stays free of alerting logic::

    routers, tasks = alerting_plugin(settings, spec, sli, journal, token)
"""

from __future__ import annotations

import asyncio
import logging
import time

from fastapi import APIRouter

from falcon_platform.config.settings import Settings
from falcon_platform.config.spec import Spec
from falcon_platform.events.journal import EventJournal, EventKind
from falcon_platform.observability.sli_store import SLIStore
from falcon_platform.supervisor.supervisor import PeriodicTask

log = logging.getLogger("falcon.supervisor.alerts")


def alerting_plugin(
    settings: Settings, spec: Spec, sli: SLIStore, journal: EventJournal, admin_token: str
) -> tuple[list[APIRouter], list[PeriodicTask]]:
    """The alert evaluator as a periodic task, plus the alerts router when available."""
    from falcon_platform.control.alerts_routes import create_alerts_router
    from falcon_platform.observability.evaluator import AlertEvaluator
    from falcon_platform.observability.webhook import send_transitions

    evaluator = AlertEvaluator(spec, profile=settings.profile)
    # An evaluation over days of history takes ~100 ms: run it in a thread, on a reader with
    # its own SQLite connection, so probes and scrapes on the loop are not held up.
    reader = sli.open_reader()

    async def evaluate() -> None:
        transitions = await asyncio.to_thread(evaluator.evaluate, reader, time.time())
        for t in transitions:
            kind = EventKind.ALERT_FIRING if t.state == "firing" else EventKind.ALERT_RESOLVED
            journal.record(
                kind,
                release=t.labels.get("release"),
                worker=t.labels.get("worker"),
                details=t.to_dict(),
                ts=t.ts,
            )
            log.warning("alert %s %s %s", t.name, t.state, t.labels)
        if transitions and settings.alert_webhook_url:
            try:
                await asyncio.to_thread(send_transitions, settings, transitions)
            except Exception as exc:  # a webhook outage must not stop evaluation
                log.warning("alert webhook failed: %s", exc)

    router = create_alerts_router(lambda: evaluator, journal, admin_token)
    return [router], [PeriodicTask("alerts", spec.alerts.evaluation_interval, evaluate)]
