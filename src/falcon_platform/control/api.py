"""The supervisor's control API (FastAPI): status, health, events, metrics, restart, shutdown.

Read-only routes are open on loopback (and on the UNIX control socket); anything that changes
state needs ``Authorization: Bearer <admin token>``. The ``falcon`` CLI talks only to this::

    app = create_control_app(supervisor, journal, token, extra_routers=[alerts_router])
    # GET  /status /health /events /metrics /config       POST /restart /shutdown   PUT /desired
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field

from falcon_platform.control.auth import bearer_token, is_loopback
from falcon_platform.control.guard import ControlGuard
from falcon_platform.errors import FalconError, UnauthorizedError
from falcon_platform.events.journal import EventJournal, parse_since
from falcon_platform.supervisor.supervisor import Supervisor

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class RestartRequest(BaseModel):
    env: dict[str, str] = Field(
        default_factory=dict, description="FALCON_* overrides: a new release."
    )
    override_gate: str | None = Field(
        default=None,
        max_length=500,
        description="Start despite gate violations; the reason is journalled.",
    )
    allow_faults: bool = Field(default=False, description="Allow FALCON_FAULTS (a drill).")


class DesiredRequest(BaseModel):
    desired: dict[str, int]


def create_control_app(
    supervisor: Supervisor,
    journal: EventJournal,
    admin_token: str,
    *,
    config_info: Mapping[str, Any] | None = None,
    extra_routers: Sequence[APIRouter] = (),
) -> FastAPI:
    """Build the control API over a running supervisor (same event loop)."""

    def require_token(authorization: Annotated[str | None, Header()] = None) -> None:
        given = bearer_token(authorization)
        if given is None or not secrets.compare_digest(given, admin_token):
            raise UnauthorizedError(
                "this call changes state and needs the admin token: set FALCON_ADMIN_TOKEN "
                "or run the CLI as the user who started the supervisor (token in <run_dir>/admin_token)"
            )

    def require_reader(
        request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> None:
        if not is_loopback(request):
            require_token(authorization)

    app = FastAPI(title="Falcon control API", version="1", docs_url="/docs", redoc_url=None)
    # First in line: the token before any body is read, bodies capped (1 MiB).
    # The console (/console/) checks its own session cookie and CSRF token on its forms.
    app.add_middleware(ControlGuard, admin_token=admin_token, session_prefix="/console/")

    @app.exception_handler(FalconError)
    async def _falcon_error(_: Request, exc: FalconError) -> JSONResponse:
        return JSONResponse({"error": exc.code, "detail": exc.detail}, status_code=exc.http_status)

    reader = [Depends(require_reader)]
    writer = [Depends(require_token)]

    @app.get("/status", dependencies=reader)
    async def status() -> dict[str, Any]:
        body = supervisor.status()
        readyz = await supervisor.ready_worker_readyz()
        stores = None
        if isinstance(readyz, dict):
            stores = readyz.get("dependencies") or readyz.get("stores")
        body["stores"] = stores
        return body

    @app.get("/health", dependencies=reader)
    async def health() -> JSONResponse:
        ok, why = supervisor.health()
        return JSONResponse({"ok": ok, "detail": why}, status_code=200 if ok else 503)

    @app.get("/events", dependencies=reader)
    async def events(
        since: str | None = None,
        until: str | None = None,
        kind: Annotated[list[str] | None, Query()] = None,
        release: str | None = None,
        worker: str | None = None,
        limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
    ) -> dict[str, Any]:
        now = time.time()
        try:
            start = (
                float(since)
                if since and _is_number(since)
                else parse_since(since, now)
                if since
                else None
            )
            end = (
                float(until)
                if until and _is_number(until)
                else parse_since(until, now)
                if until
                else None
            )
        except ValueError as exc:
            from falcon_platform.errors import InvalidInputError

            raise InvalidInputError(str(exc)) from None
        found = journal.query(
            since=start, until=end, kinds=kind, release=release, worker=worker, limit=limit
        )
        return {"events": [e.to_dict() for e in found]}

    @app.get("/metrics", dependencies=reader)
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(supervisor.metrics_text(), media_type=PROMETHEUS_CONTENT_TYPE)

    @app.get("/sli", dependencies=reader)
    async def sli(
        name: str,
        start: float,
        end: float | None = None,
        match: Annotated[list[str] | None, Query(description="label=value")] = None,
    ) -> dict[str, Any]:
        """Samples of one SLI series family (plain (time, value) lists), for tools and tests."""
        if supervisor.sli is None:
            return {"series": []}
        labels = dict(item.partition("=")[::2] for item in match or [])
        found = supervisor.sli.query(
            name, start, end if end is not None else time.time(), labels or None
        )
        return {
            "series": [
                {"name": s.name, "labels": dict(s.labels), "samples": [list(p) for p in s.samples]}
                for s in found
            ]
        }

    @app.get("/config", dependencies=reader)
    async def config() -> dict[str, Any]:
        return dict(config_info or {})

    @app.post("/restart", dependencies=writer, status_code=202)
    async def restart(body: RestartRequest | None = None) -> dict[str, Any]:
        body = body or RestartRequest()
        return supervisor.start_rolling_restart(
            body.env or None, override_reason=body.override_gate, allow_faults=body.allow_faults
        )

    @app.post("/shutdown", dependencies=writer, status_code=202)
    async def shutdown() -> dict[str, Any]:
        supervisor.request_stop("falcon down")
        return {"stopping": True, "pid": supervisor.status()["supervisor"]["pid"]}

    @app.put("/desired", dependencies=writer)
    async def desired(body: DesiredRequest) -> dict[str, int]:
        supervisor.set_desired(body.desired)
        return dict(supervisor.desired)

    for router in extra_routers:
        app.include_router(router)
    return app


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
