"""Liveness, readiness and metrics: shared by the public app and the private admin app.

The worker serves :func:`create_admin_app` on its private UNIX socket for the
supervisor (probes, scrapes), over the same :class:`ServingState` as the public
app, so draining shows on both at once.
"""

from __future__ import annotations

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from falcon_platform.serving.state import ServingState


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


def create_admin_app(state_or_app: ServingState | Starlette) -> ASGIApp:
    """``/healthz``, ``/readyz``, ``/metrics`` over the state of ``create_app(...)``'s app.

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

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ]
    )
