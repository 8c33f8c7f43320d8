"""Request and response bodies, as pydantic models: the OpenAPI contract.

The original Falcon field names are kept on purpose (its clients keep working).
Limits that come from settings (max text length, max batch size) are checked in
:mod:`serving.validation` and described here, because the schema is static.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_STRICT = ConfigDict(extra="forbid", strict=True)


class InferRequest(BaseModel):
    """``POST /infer``: one text."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"text": "great screen but the battery died"}]},
    )

    text: str = Field(
        min_length=1,
        description="Text to classify; not blank, at most FALCON_MAX_TEXT_CHARS (10,000).",
    )


class BatchRequest(BaseModel):
    """``POST /infer/batch``: 1 to FALCON_MAX_BATCH_ITEMS (256) texts."""

    model_config = _STRICT

    texts: list[str] = Field(
        min_length=1,
        description="Texts to classify, in order; each like InferRequest.text.",
    )


class Prediction(BaseModel):
    prediction: str = Field(description="The most probable label.")
    confidence: float = Field(ge=0, le=1, description="Probability of `prediction`.")
    probabilities: dict[str, float] = Field(description="Label -> probability; sums to 1.")


class InferResponse(Prediction):
    model_version: str
    release: str
    worker_id: str
    request_id: str
    cache_hit: bool
    idempotency_hit: bool
    processing_time_ms: float


class BatchItem(Prediction):
    cache_hit: bool


class BatchResponse(BaseModel):
    results: list[BatchItem] = Field(description="One result per input text, in order.")
    model_version: str
    release: str
    worker_id: str
    request_id: str
    idempotency_hit: bool
    processing_time_ms: float


class ErrorResponse(BaseModel):
    """Every error: a code, what is wrong and how to fix it, and the request id."""

    error: str = Field(description="Stable machine-readable code, e.g. `invalid_input`.")
    detail: str = Field(description="What is wrong and how to fix it.")
    request_id: str


class ModelInfo(BaseModel):
    name: str
    version: str
    sha256: str
    labels: list[str]
    metadata: dict[str, Any]


class Health(BaseModel):
    status: str
    worker_id: str
    release: str


class Readiness(BaseModel):
    status: str = Field(description="`ready`, `starting` or `draining`.")
    ready: bool
    worker_id: str
    release: str
    model_version: str | None
    dependencies: dict[str, dict[str, Any]] = Field(
        description="Per store: backend and state; a degraded dependency does not fail readiness."
    )
    degraded: list[str]


# --- Open Inference Protocol v2 (KServe / Triton / MLServer) ----------------------------------


class V2RequestInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = Field(
        default=None, description="Row-major tensor data; omitted when sent as binary."
    )


class V2RequestOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    parameters: dict[str, Any] | None = None


class V2InferRequest(BaseModel):
    """One BYTES input tensor of texts, shape ``[n]`` or ``[n, 1]``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["ok"]}]}
            ]
        },
    )

    id: str | None = None
    model_name: str | None = Field(
        default=None, description="Optional (KServe's client sends it); must match the URL."
    )
    model_version: str | None = Field(
        default=None, description="Optional; must match the URL's version when both are given."
    )
    parameters: dict[str, Any] | None = None
    inputs: list[V2RequestInput] = Field(min_length=1)
    outputs: list[V2RequestOutput] | None = None


class V2ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]
    parameters: dict[str, Any] | None = None


class V2InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[V2ResponseOutput]


class V2TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class V2ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[V2TensorMetadata]
    outputs: list[V2TensorMetadata]


class V2ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class V2Live(BaseModel):
    live: bool


class V2Ready(BaseModel):
    ready: bool
