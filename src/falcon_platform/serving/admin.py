"""Liveness, readiness and metrics: shared by the public app and the private admin app.

The worker serves :func:`create_admin_app` on its private UNIX socket for the
supervisor (probes, scrapes), over the same :class:`ServingState` as the public
app, so draining shows on both at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from falcon_platform.serving.errors import RawResponse
from falcon_platform.serving.state import ServingState

if TYPE_CHECKING:
    from falcon_platform.serving.inference import InferenceService


def json_response(status: int, body: object, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers=headers, media_type="application/json")


def health_response(state: ServingState) -> Response:
    """Liveness: the process answers; no dependency is checked (a dead Redis is not a restart)."""
    s = state.settings
    return json_response(200, {"status": "ok", "worker_id": s.worker_id, "release": s.release})


def readiness_response(state: ServingState, *, details: bool = False) -> Response:
    status, body = state.readiness(details=details)
    return json_response(status, body)


def metrics_response(state: ServingState) -> Response:
    body, content_type = state.metrics.render()
    return Response(body, 200, media_type=content_type)


SYNTHETIC_PATH = "/synthetic/infer"  # POST, as /infer: a canary's synthetic request


def create_admin_app(
    state_or_app: ServingState | Starlette, service: InferenceService | None = None
) -> ASGIApp:
    """``/healthz``, ``/readyz``, ``/metrics`` over the state of ``create_app(...)``'s app;
    with ``service``, also ``POST /synthetic/infer`` (``/infer`` for the supervisor's synthetic
    canary traffic: only it can reach this private socket, so no user can pass their requests
    off as synthetic, nor synthetic ones as user traffic).

    Its lifespan does nothing: the public app's lifespan loads and closes everything.
    """
    state: ServingState = (
        state_or_app if isinstance(state_or_app, ServingState) else state_or_app.state.falcon
    )

    async def healthz(request: Request) -> Response:
        return health_response(state)

    async def readyz(request: Request) -> Response:
        return readiness_response(state, details=True)

    async def metrics(request: Request) -> Response:
        return metrics_response(state)

    probes = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ]
    )
    if service is None:
        return probes
    from falcon_platform.serving.fastpath import send_raw

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == SYNTHETIC_PATH:
            if scope["method"] != "POST":
                await send_raw(send, RawResponse(405, b"", [(b"allow", b"POST")]))
                return
            resp = await service.handle("/infer", scope, receive, synthetic=True)
            if resp is not None:
                await send_raw(send, resp)
            return
        await probes(scope, receive, send)

    return app
