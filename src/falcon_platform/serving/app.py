"""The public ASGI app (FastAPI) and the private admin app, over one serving state.

    app = create_app(settings)                    # lifespan loads model + stores, warms up
    admin = create_admin_app(app)                 # /healthz /readyz /metrics for the supervisor
    app.state.falcon.begin_drain()                # /readyz → 503 at once (call first on SIGTERM)

Lifespan: load the model (unless given), start the stores (given or built from
settings; the app owns them either way: it starts and closes them), warm up
with one ``predict_proba``, start the micro-batcher, then readiness turns OK.
Shutdown: readiness fails at once, the batcher answers what is queued, then
``stores.close()`` flushes and ships the request log (bounded by the grace).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from falcon_platform import __version__
from falcon_platform.chaos.faults import FaultInjector
from falcon_platform.config.settings import Settings
from falcon_platform.errors import FalconError
from falcon_platform.model.base import ServableModel
from falcon_platform.serving import routes
from falcon_platform.serving.admin import create_admin_app
from falcon_platform.serving.batcher import MicroBatcher
from falcon_platform.serving.errors import (
    REQUEST_ID_KEY,
    error_body,
    error_response,
    http_error_code,
    new_request_id,
)
from falcon_platform.serving.fastpath import FastPath
from falcon_platform.serving.inference import InferenceService
from falcon_platform.serving.metrics import ServingMetrics
from falcon_platform.serving.schemas import BatchRequest, InferRequest, V2InferRequest
from falcon_platform.serving.state import ServingState, StoresLike

__all__ = ["create_admin_app", "create_app"]

log = logging.getLogger("falcon.serving")

WARMUP_TEXTS = ("great screen but the battery died", "not bad at all", "the order never came")

DESCRIPTION = """Falcon's inference API. Every error is JSON
`{"error": code, "detail": what is wrong and how to fix it, "request_id": ...}`.
`request_id` is the server's id of the request (the request-log key); an `X-Request-ID` you
send is checked, logged beside it and echoed back as a header. `Idempotency-Key` makes
retries safe (keys are scoped to the client)."""

DOCS_STATIC = "/docs/static"


def _request_id(request: Request) -> str:
    rid: str | None = request.scope.get(REQUEST_ID_KEY)
    return rid or new_request_id()


def _to_response(status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> Response:
    return Response(
        body,
        status,
        headers={k.decode(): v.decode() for k, v in headers},
        media_type="application/json",
    )


def _install_error_handlers(app: FastAPI) -> None:
    """The one mapping FalconError → HTTP response (plus the framework's own 404/405/422)."""

    async def falcon_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, FalconError)
        raw = error_response(exc, _request_id(request))
        return _to_response(raw.status, raw.body, raw.headers)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        detail = {
            404: f"no route {request.url.path!r}; the API is listed at /docs",
            405: f"{request.method} is not allowed on {request.url.path!r}; see /docs",
        }.get(exc.status_code, str(exc.detail))
        body = error_body(http_error_code(exc.status_code), detail, _request_id(request))
        return _to_response(exc.status_code, body, list(_raw_headers(exc.headers)))

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        parts = [
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in list(exc.errors())[:5]
        ]
        body = error_body("invalid_input", "; ".join(parts), _request_id(request))
        return _to_response(422, body, [])

    async def unhandled(request: Request, exc: Exception) -> Response:
        rid = _request_id(request)
        log.error("unhandled error", exc_info=exc, extra={"fields": {"request_id": rid}})
        body = error_body("internal_error", f"internal error; quote request id {rid}", rid)
        return _to_response(500, body, [])

    app.add_exception_handler(FalconError, falcon_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unhandled)


def _raw_headers(headers: Mapping[str, str] | None) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, v in (headers or {}).items()]


def _install_openapi(app: FastAPI) -> None:
    """Add the request schemas the raw-body routes reference to ``components``."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (InferRequest, BatchRequest, V2InferRequest):
            js = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(js.pop("$defs", {}))
            components[model.__name__] = js
        schema["components"]["schemas"] = dict(sorted(components.items()))
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _install_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) from the assets of the ``swagger-ui-bundle`` package: it works
    on a machine without internet, and the page loads nothing from elsewhere."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from starlette.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    async def docs(request: Request) -> Response:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} - API",
            swagger_js_url=f"{DOCS_STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_STATIC}/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from swagger.io
        )

    app.add_api_route("/docs", docs, methods=["GET"], include_in_schema=False)
    app.mount(DOCS_STATIC, StaticFiles(directory=str(swagger_ui_path)), name="docs-static")


def _chain_drain_on_signals(state: ServingState) -> None:
    """Make SIGTERM/SIGINT fail readiness first, then run the server's own handler."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue

        def handler(signum: int, frame: FrameType | None, previous: Any = previous) -> None:
            state.begin_drain()
            previous(signum, frame)

        signal.signal(sig, handler)


@dataclass(slots=True)
class _Started:
    """What the lifespan's start-up got to, so shutdown undoes only that."""

    stores: bool = False


async def _start(state: ServingState, service: InferenceService, started: _Started) -> None:
    s = state.settings
    model = state.model
    if model is None:
        from falcon_platform.model.registry import load_model  # sklearn is heavy: import late

        loaded: ServableModel = await asyncio.to_thread(load_model, s.resolved_model_path)
        state.model = model = loaded
    if state.stores is None:
        from falcon_platform.stores.factory import build_stores

        state.stores = build_stores(s)
    await state.stores.start()
    started.stores = True
    model.predict_proba(list(WARMUP_TEXTS))  # first call pays lazy init; not a client's
    batcher = MicroBatcher(
        model.predict_proba,
        max_size=s.batch_max_size,
        max_wait_s=s.batch_max_wait_ms / 1000,
        queue_max=s.queue_max,
        timeout_s=s.inference_timeout_ms / 1000,
        executor=s.batch_executor,
        on_batch=state.metrics.batch_size.observe,
    )
    await batcher.start()
    state.batcher = batcher
    service.body.start()
    metrics = state.metrics
    metrics.bind_model(model.name, model.version, model.sha256)
    metrics.bind_queue(lambda: batcher.depth)
    stores = state.stores
    metrics.bind_stores(stores.stats)
    metrics.bind_faults(lambda: state.faults.active)
    _register_spec_metrics(state)
    # The model's vocabularies are hundreds of thousands of long-lived objects; a full GC
    # pass over them stalls the loop for tens of ms (the tail). Freeze them out of the GC.
    gc.collect()
    gc.freeze()
    state.phase = "ready"
    log.info(
        "ready",
        extra={"fields": {"worker": s.worker_id, "release": s.release,
                          "model_version": model.version, "executor": s.batch_executor,
                          "fast_path": s.fast_path}},
    )  # fmt: skip


def _register_spec_metrics(state: ServingState) -> None:
    """What needs the spec: ``falcon_config_info{fingerprint, profile}`` (the same fingerprint
    the supervisor journals) and the memory limit in force (the spec's unless
    FALCON_MEMORY_LIMIT_MB overrides it), so Prometheus can alert on memory against it."""
    from falcon_platform.config.fingerprint import fingerprint, salt_for
    from falcon_platform.config.memory import memory_limits
    from falcon_platform.config.specfile import load_spec
    from falcon_platform.observability.config_info import register_config_info

    s = state.settings
    try:
        spec = load_spec(s.spec_path)
        fp = fingerprint(s, spec, salt=salt_for(s.run_dir))
    except FalconError as exc:  # a bad spec is the gate's business, not a reason not to serve
        log.warning("no config fingerprint: %s", exc.detail)
        return
    limits = memory_limits(
        spec.workers.memory_limit_mb,
        spec.workers.memory_soft_limit_percent,
        s.memory_limit_mb,
        s.memory_soft_limit_percent,
    )
    state.metrics.set_memory_limit(limits.limit_bytes or 0)
    labels = {"worker": s.worker_id, "release": s.release}
    register_config_info(state.metrics.registry, fp, labels=labels)


async def _stop(state: ServingState, service: InferenceService, started: _Started) -> None:
    state.begin_drain()
    state.faults.stop_announcing()
    gc.unfreeze()
    grace = state.settings.shutdown_grace_s
    await service.body.stop()
    if state.batcher is not None:
        await state.batcher.close(timeout_s=min(grace, state.settings.inference_timeout_ms / 1000))
    if state.stores is not None and started.stores:
        await state.stores.close()
    log.info("stopped", extra={"fields": {"worker": state.settings.worker_id}})


class FalconAPI(FastAPI):
    """FastAPI with the fast path (and request ids) in front of everything else."""

    fast_path: FastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.fast_path is not None:
            await self.fast_path(scope, receive, send, super().__call__)
        else:
            await super().__call__(scope, receive, send)


def create_app(
    settings: Settings,
    *,
    model: ServableModel | None = None,
    stores: StoresLike | None = None,
    faults: FaultInjector | None = None,
    drain_on_signal: bool = False,
    public_metrics: bool = True,
) -> FastAPI:
    """Build the public app. ``drain_on_signal`` chains SIGTERM/SIGINT to ``begin_drain``
    (for a plain ``uvicorn --factory`` run; ``falcon worker`` calls ``begin_drain`` itself)."""
    metrics = ServingMetrics(
        worker=settings.worker_id,
        release=settings.release,
        profile=settings.profile,
        memory_limit_bytes=(settings.memory_limit_mb or 0) * 1024 * 1024,
    )
    state = ServingState(
        settings=settings,
        metrics=metrics,
        faults=faults if faults is not None else FaultInjector(),
        model=model,
        stores=stores,
        public_metrics=public_metrics,
    )
    service = InferenceService(state)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        started = _Started()
        if drain_on_signal:
            _chain_drain_on_signals(state)
        try:
            await _start(state, service, started)
            yield
        finally:
            await _stop(state, service, started)

    app = FalconAPI(
        title="Falcon",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served from the package by _install_docs, not from a CDN
        redoc_url=None,
    )
    app.state.falcon = state
    app.state.falcon_service = service
    app.include_router(routes.inference)
    app.include_router(routes.v2)
    app.include_router(routes.ops)
    _install_error_handlers(app)
    _install_openapi(app)
    _install_docs(app)
    app.fast_path = FastPath(service, enabled=settings.fast_path)
    app.state.falcon_service = service  # the admin socket's synthetic /infer serves through it
    return app
