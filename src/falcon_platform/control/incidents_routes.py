"""The incidents part of the control API (one ``APIRouter``) and its supervisor plug-in.

Reads are open on loopback (the token elsewhere); every change needs the admin token::

    GET  /incidents[?status=open&limit=50]     GET /incidents/{id}
    GET  /incidents/{id}/bundle (data)         GET /incidents/{id}/postmortem (Markdown)
    GET  /actions[?incident=ID&overdue=true]   POST /actions   POST /actions/{id}/start|done|todo
    POST /incidents {"title": ..., "severity": "P1"}
    POST /incidents/{id}/ack|note|mitigate|resolve {"by": "alice", "text": "..."}
    POST /incidents/{id}/severity {"severity": "P0", "by": "alice"}

    routers, tasks = incidents_plugin(spec, engine, journal, token, workers_total=lambda: 2)
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field
from sqlalchemy import Engine

from falcon_platform.config.spec import Spec
from falcon_platform.control.auth import bearer_token, is_loopback
from falcon_platform.errors import InvalidInputError, RuntimeStateError, UnauthorizedError
from falcon_platform.events.journal import EventJournal
from falcon_platform.incidents.actions import (
    ActionStatus,
    SqlActionStore,
    check_action_id,
)
from falcon_platform.incidents.actions import overdue as overdue_items
from falcon_platform.incidents.bundle import collect_bundle
from falcon_platform.incidents.model import (
    Action,
    Incident,
    Severity,
    Status,
    check_incident_id,
)
from falcon_platform.incidents.postmortem import render_markdown
from falcon_platform.incidents.service import IncidentService
from falcon_platform.incidents.store import SqlIncidentStore, failed_request_share
from falcon_platform.incidents.watcher import IncidentWatcher
from falcon_platform.observability.sli_store import SLIStore
from falcon_platform.supervisor.supervisor import PeriodicTask

log = logging.getLogger("falcon.incidents")

_WHO = Field(default="operator", min_length=1, max_length=100, description="Who acts.")


class OpenRequest(BaseModel):
    title: str = Field(min_length=1, max_length=300)
    severity: Severity = Severity.P2
    tags: list[str] = Field(default_factory=list, max_length=20)
    commander: str | None = Field(default=None, max_length=100)
    release: str | None = Field(default=None, max_length=64)
    by: str = _WHO


class ActionRequest(BaseModel):
    by: str = _WHO
    text: str | None = Field(default=None, max_length=5000)


class ActionItemRequest(BaseModel):
    incident: str = Field(min_length=1, max_length=32)
    category: str = Field(
        min_length=1, max_length=20, description="Prevent, Detect, Respond, Long-term"
    )
    description: str = Field(min_length=1, max_length=2000)
    owner: str = Field(min_length=1, max_length=100)
    due: str = Field(min_length=1, max_length=10, description="YYYY-MM-DD")
    link: str | None = Field(default=None, max_length=500)
    suggested: bool = False
    by: str = _WHO


class SeverityRequest(BaseModel):
    severity: Severity
    by: str = _WHO


def create_incidents_router(
    service: IncidentService,
    admin_token: str,
    *,
    make_bundle: Callable[[Incident], dict[str, Any]] | None = None,
) -> APIRouter:
    """``make_bundle`` (blocking; run in a thread) serves /bundle and /postmortem."""
    router = APIRouter(tags=["incidents"])

    def check_token(authorization: str | None) -> None:
        given = bearer_token(authorization)
        if given is None or not secrets.compare_digest(given, admin_token):
            raise UnauthorizedError(
                "this incidents call needs the admin token (changes always; reads from another "
                "host): set FALCON_ADMIN_TOKEN or run the CLI as the user who started the supervisor"
            )

    def check_reader(request: Request, authorization: str | None) -> None:
        if not is_loopback(request):
            check_token(authorization)

    @router.get("/incidents")
    async def list_incidents(
        request: Request,
        status: Annotated[list[Status] | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        authorization: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        check_reader(request, authorization)
        found = await asyncio.to_thread(service.store.find, status=status, limit=limit)
        return {"incidents": [i.to_dict() for i in found], "now": time.time()}

    @router.get("/incidents/{incident_id}")
    async def get_incident(
        request: Request,
        incident_id: str,
        authorization: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        check_reader(request, authorization)
        check_incident_id(incident_id)
        return (await asyncio.to_thread(service.store.get, incident_id)).to_dict()

    async def bundle_of(incident_id: str) -> dict[str, Any]:
        check_incident_id(incident_id)
        inc = await asyncio.to_thread(service.store.get, incident_id)
        if make_bundle is None:
            raise RuntimeStateError("this control API has no request log or SLI store attached")
        return await asyncio.to_thread(make_bundle, inc)

    @router.get("/incidents/{incident_id}/bundle")
    async def get_bundle(
        request: Request,
        incident_id: str,
        authorization: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        """Everything the postmortem shows, as data (the CLI renders it and its graphs)."""
        check_reader(request, authorization)
        return await bundle_of(incident_id)

    @router.get("/incidents/{incident_id}/postmortem", response_class=PlainTextResponse)
    async def get_postmortem(
        request: Request,
        incident_id: str,
        authorization: Annotated[str | None, Header()] = None,
    ) -> PlainTextResponse:
        """The postmortem as Markdown (graphs referenced as files: use the CLI to get them)."""
        check_reader(request, authorization)
        bundle = await bundle_of(incident_id)
        text = await asyncio.to_thread(render_markdown, bundle)
        return PlainTextResponse(text, media_type="text/markdown; charset=utf-8")

    @router.get("/actions")
    async def list_actions(
        request: Request,
        incident: str | None = None,
        overdue: bool = False,
        authorization: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        """Action items (all, one incident's, or the overdue ones: past due and not DONE)."""
        check_reader(request, authorization)
        if incident is not None:
            check_incident_id(incident)
        store = service.actions
        found = await asyncio.to_thread(store.find, incident=incident) if store else []
        today = datetime.now(UTC).date().isoformat()
        late = {i.id for i in overdue_items(found, today)}
        if overdue:
            found = [i for i in found if i.id in late]
        return {
            "actions": [i.to_dict() | {"overdue": i.id in late} for i in found],
            "today": today,
        }

    @router.post("/actions", status_code=201)
    async def add_action(
        body: ActionItemRequest, authorization: Annotated[str | None, Header()] = None
    ) -> dict[str, Any]:
        check_token(authorization)
        check_incident_id(body.incident)
        item = await asyncio.to_thread(
            service.add_action,
            body.incident,
            category=body.category,
            description=body.description,
            owner=body.owner,
            due=body.due,
            link=body.link,
            suggested=body.suggested,
        )
        return item.to_dict()

    @router.post("/actions/{item_id}/{verb}")
    async def advance_action(
        item_id: str,
        verb: str,
        body: Annotated[ActionRequest | None, Body()] = None,
        authorization: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        check_token(authorization)
        check_action_id(item_id)
        targets = {
            "start": ActionStatus.IN_PROGRESS,
            "done": ActionStatus.DONE,
            "todo": ActionStatus.TODO,
        }
        if verb not in targets:
            raise InvalidInputError(f"unknown action-item step {verb!r}; use start, done or todo")
        by = (body or ActionRequest()).by
        item = await asyncio.to_thread(service.advance_action, item_id, targets[verb], by=by)
        return item.to_dict()

    @router.post("/incidents", status_code=201)
    async def open_incident(
        body: OpenRequest, authorization: Annotated[str | None, Header()] = None
    ) -> dict[str, Any]:
        check_token(authorization)
        inc = await asyncio.to_thread(
            service.open_manual,
            body.title,
            by=body.by,
            severity=body.severity,
            tags=body.tags,
            commander=body.commander,
            release=body.release,
        )
        return inc.to_dict()

    @router.post("/incidents/{incident_id}/severity")
    async def set_severity(
        incident_id: str,
        body: SeverityRequest,
        authorization: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        check_token(authorization)
        check_incident_id(incident_id)
        inc = await asyncio.to_thread(service.set_severity, incident_id, body.severity, by=body.by)
        return inc.to_dict()

    @router.post("/incidents/{incident_id}/{action}")
    async def act(
        incident_id: str,
        action: str,
        body: Annotated[ActionRequest | None, Body()] = None,
        authorization: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        check_token(authorization)
        check_incident_id(incident_id)
        try:
            verb = Action(action)
        except ValueError:
            verb = Action.SIGNAL
        if verb is Action.SIGNAL:
            raise InvalidInputError(
                f"unknown incident action {action!r}; use ack, note, mitigate or resolve"
            )
        body = body or ActionRequest()
        inc = await asyncio.to_thread(service.act, incident_id, verb, by=body.by, text=body.text)
        return inc.to_dict()

    return router


def incidents_plugin(
    spec: Spec,
    engine: Engine,
    journal: EventJournal,
    admin_token: str,
    *,
    sli: SLIStore | None = None,
    scrape_interval_s: float = 5.0,
    workers_total: Callable[[], int] = lambda: 1,
    interval_s: float = 1.0,
) -> tuple[list[APIRouter], list[PeriodicTask], IncidentService]:
    """The incidents router and the watcher as a periodic task (in a thread: SQL I/O)."""
    service = IncidentService(
        SqlIncidentStore(engine), journal, spec.incidents, actions=SqlActionStore(engine)
    )

    def make_bundle(inc: Incident) -> dict[str, Any]:
        reader = sli.open_reader() if sli is not None else None
        items = service.actions.find() if service.actions is not None else []
        today = datetime.now(UTC).date().isoformat()
        try:
            return collect_bundle(
                inc,
                journal=journal,
                engine=engine,
                sli=reader,
                spec=spec,
                now=time.time(),
                scrape_interval_s=scrape_interval_s,
                related=service.store.find(limit=20),
                actions=[i.to_dict() for i in items if i.incident == inc.id],
                overdue_actions=[i.to_dict() for i in overdue_items(items, today)],
            )
        finally:
            if reader is not None:
                reader.close()

    watcher = IncidentWatcher(
        service,
        journal,
        spec.incidents,
        since=time.time(),
        workers_total=workers_total,
        failed_share=lambda start, end: failed_request_share(engine, start, end),
    )

    ticks = 0
    quiet_until = 0.0

    async def watch() -> None:
        nonlocal ticks, quiet_until
        try:
            if ticks == 0:
                await asyncio.to_thread(
                    service.forget_triggers, time.time(), why="the supervisor (re)started"
                )
            await asyncio.to_thread(watcher.tick, time.time())
            if ticks % 15 == 0:  # the gauges: cheap queries, but not every second
                await asyncio.to_thread(service.refresh_metrics)
        except Exception as exc:  # a database outage: say so once a minute, not every second
            if time.monotonic() >= quiet_until:
                quiet_until = time.monotonic() + 60
                log.error("incident watcher cannot read or write the stores: %s", exc)
        finally:
            ticks += 1

    router = create_incidents_router(service, admin_token, make_bundle=make_bundle)
    return [router], [PeriodicTask("incidents", interval_s, watch)], service
