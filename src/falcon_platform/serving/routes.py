"""The public API's FastAPI routes: one router per domain, wired in ``app.py``.

The inference routes take the raw request and call :class:`InferenceService`
(the fast path calls the same), so they are declared here for OpenAPI with
their request schema referenced explicitly (``openapi_extra``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from falcon_platform import __version__
from falcon_platform.errors import ModelError, NotFoundError
from falcon_platform.model.base import ServableModel
from falcon_platform.serving.admin import (
    health_response,
    json_response,
    metrics_response,
    readiness_response,
)
from falcon_platform.serving.errors import RawResponse
from falcon_platform.serving.inference import BATCH, INFER, V2_INFER, InferenceService
from falcon_platform.serving.schemas import (
    BatchResponse,
    ErrorResponse,
    Health,
    InferResponse,
    ModelInfo,
    Readiness,
    V2InferResponse,
    V2Live,
    V2ModelMetadata,
    V2Ready,
    V2ServerMetadata,
)
from falcon_platform.serving.state import ServingState
from falcon_platform.serving.v2 import check_served, model_metadata

_ERRORS = {
    400: "Malformed request (invalid JSON, a key sent twice, not UTF-8, a bad X-Request-ID, "
    "two different idempotency keys, a malformed v2 tensor).",
    404: "Unknown model.",
    408: "The body did not arrive within FALCON_BODY_TIMEOUT_S.",
    413: "Body over FALCON_MAX_BODY_BYTES.",
    415: "Content-Type is not application/json, or names a charset other than UTF-8.",
    422: "Invalid input (blank or too long text, too many texts, wrong types, missing or extra "
    "fields), or an Idempotency-Key reused for a different request.",
    503: "Overloaded (queue full; see Retry-After), not ready, or request log unavailable.",
    504: "No answer from the model within FALCON_INFERENCE_TIMEOUT_MS.",
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorResponse, "description": _ERRORS[code]} for code in codes}


def _body(schema: str) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{schema}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def get_state(request: Request) -> ServingState:
    state: ServingState = request.app.state.falcon
    return state


def get_service(request: Request) -> InferenceService:
    service: InferenceService = request.app.state.falcon_service
    return service


StateDep = Annotated[ServingState, Depends(get_state)]
ServiceDep = Annotated[InferenceService, Depends(get_service)]


def _send(resp: RawResponse | None) -> Response:
    if resp is None:  # the client is gone; nobody reads this
        return Response(status_code=400)
    return Response(
        resp.body,
        resp.status,
        headers=dict(_decode(resp.headers)),
        media_type=resp.content_type.decode(),
    )


def _decode(headers: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers]


# --- inference --------------------------------------------------------------------------------
inference = APIRouter(tags=["inference"])


@inference.post(
    "/infer",
    summary="Classify one text",
    response_model=None,
    responses={200: {"model": InferResponse}, **_errors(400, 408, 413, 415, 422, 503, 504)},
    openapi_extra=_body("InferRequest"),
)
async def infer(request: Request, service: ServiceDep) -> Response:
    """Send `Idempotency-Key` (or `X-Idempotency-Key`) to make a retry return the same answer."""
    return _send(await service.handle(INFER, request.scope, request.receive))


@inference.post(
    "/infer/batch",
    summary="Classify up to FALCON_MAX_BATCH_ITEMS texts, in order",
    response_model=None,
    responses={200: {"model": BatchResponse}, **_errors(400, 408, 413, 415, 422, 503, 504)},
    openapi_extra=_body("BatchRequest"),
)
async def infer_batch(request: Request, service: ServiceDep) -> Response:
    return _send(await service.handle(BATCH, request.scope, request.receive))


# --- Open Inference Protocol v2 -----------------------------------------------------------------
v2 = APIRouter(prefix="/v2", tags=["open inference protocol v2"])

_V2_INFER_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": V2InferResponse,
        "description": "JSON, or with binary outputs: a JSON header of "
        "`Inference-Header-Content-Length` bytes followed by the tensors.",
        "content": {"application/octet-stream": {"schema": {"type": "string"}}},
    },
    **_errors(400, 404, 408, 413, 415, 422, 503, 504),
}


def _served(state: ServingState, name: str, version: str | None = None) -> ServableModel:
    model = state.model
    if model is None:
        raise ModelError("the model is still loading; retry in a few seconds (see /readyz)")
    check_served(model, name, version)
    return model


@v2.get("", response_model=V2ServerMetadata)
async def v2_server_metadata() -> V2ServerMetadata:
    return V2ServerMetadata(name="falcon", version=__version__, extensions=["binary_tensor_data"])


@v2.get("/health/live", response_model=V2Live)
async def v2_live() -> V2Live:
    return V2Live(live=True)


@v2.get("/health/ready", response_model=V2Ready, responses={503: {"model": V2Ready}})
async def v2_ready(state: StateDep) -> Response:
    return json_response(200 if state.ready else 503, {"ready": state.ready})


@v2.get("/models/{model_name}", response_model=V2ModelMetadata, responses=_errors(404, 503))
async def v2_model_metadata(model_name: str, state: StateDep) -> V2ModelMetadata:
    model = _served(state, model_name)
    return model_metadata(model.name, model.version, len(model.labels))


@v2.get(
    "/models/{model_name}/versions/{model_version}",
    response_model=V2ModelMetadata,
    responses=_errors(404, 503),
)
async def v2_model_version_metadata(
    model_name: str, model_version: str, state: StateDep
) -> V2ModelMetadata:
    model = _served(state, model_name, model_version)
    return model_metadata(model.name, model.version, len(model.labels))


@v2.get(
    "/models/{model_name}/ready",
    response_model=V2Ready,
    responses={503: {"model": V2Ready}, **_errors(404)},
)
async def v2_model_ready(model_name: str, state: StateDep) -> Response:
    _served(state, model_name)
    return json_response(200 if state.ready else 503, {"ready": state.ready})


@v2.post(
    "/models/{model_name}/infer",
    summary="Infer (Open Inference Protocol v2): one BYTES input of texts",
    response_model=None,
    responses=_V2_INFER_RESPONSES,
    openapi_extra=_body("V2InferRequest"),
)
async def v2_infer(model_name: str, request: Request, service: ServiceDep) -> Response:
    return _send(
        await service.handle(V2_INFER, request.scope, request.receive, model_name=model_name)
    )


@v2.post(
    "/models/{model_name}/versions/{model_version}/infer",
    summary="Infer on a given model version (Open Inference Protocol v2)",
    response_model=None,
    responses=_V2_INFER_RESPONSES,
    openapi_extra=_body("V2InferRequest"),
)
async def v2_infer_version(
    model_name: str, model_version: str, request: Request, service: ServiceDep
) -> Response:
    return _send(
        await service.handle(
            V2_INFER,
            request.scope,
            request.receive,
            model_name=model_name,
            model_version=model_version,
        )
    )


# --- operations ------------------------------------------------------------------------------
ops = APIRouter(tags=["operations"])


@ops.get("/healthz", response_model=Health, summary="Liveness (no dependency checks)")
async def healthz(state: StateDep) -> Response:
    return health_response(state)


@ops.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Starting or draining."}},
    summary="Readiness: 200 once the model is loaded and warmed up; 503 while draining",
)
async def readyz(state: StateDep) -> Response:
    return readiness_response(state)


@ops.get(
    "/metrics",
    summary="Prometheus metrics (a lone worker; under `falcon up`, the control API serves them)",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(state: StateDep) -> Response:
    if not state.public_metrics:
        raise NotFoundError(
            "this worker's metrics are not served on the public port: scrape the control API's "
            "/metrics (FALCON_CONTROL_PORT), which aggregates every worker's, or set "
            "FALCON_PUBLIC_METRICS=on"
        )
    return metrics_response(state)


@ops.get("/model", response_model=ModelInfo, responses=_errors(503), summary="The model served")
async def model_info(state: StateDep) -> ModelInfo:
    model = state.model
    if model is None:
        raise ModelError("the model is still loading; retry in a few seconds (see /readyz)")
    return ModelInfo(
        name=model.name,
        version=model.version,
        sha256=model.sha256,
        labels=list(model.labels),
        metadata=model.metadata,
    )
