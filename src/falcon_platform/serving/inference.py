"""The path of an inference request, shared by the FastAPI routes and the raw-ASGI fast path.

``InferenceService.handle(endpoint, scope, receive)`` does everything after
routing: headers, request id, body limits, validation, idempotency, cache,
micro-batcher, response body, the request-log row (appended *before* the
response is sent), metrics and the access log line. It returns a
:class:`RawResponse`; the caller only sends it. Because both paths call this one
function, their validation rules and error bodies cannot drift apart.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.types import Receive, Scope

from falcon_platform.errors import (
    DependencyError,
    FalconError,
    OverloadedError,
)
from falcon_platform.observability.logging import log_access
from falcon_platform.serving.body import BodyReader, ClientDisconnectedError
from falcon_platform.serving.errors import (
    REQUEST_ID_KEY,
    RawResponse,
    error_response,
    resolve_request_id,
)
from falcon_platform.serving.idempotency import IdempotencyKeys
from falcon_platform.serving.predictor import Predictor, text_hash
from falcon_platform.serving.state import ServingState
from falcon_platform.serving.v2 import check_served, parse_v2_infer, render_v2_response
from falcon_platform.serving.validation import (
    check_content_length,
    check_content_type,
    parse_batch,
    parse_infer,
)
from falcon_platform.stores.base import RequestLogRecord

INFER = "/infer"
BATCH = "/infer/batch"
V2_INFER = "/v2/infer"

log = logging.getLogger("falcon.serving")

Prediction = dict[str, Any]


@dataclass(slots=True)
class _Headers:
    content_type: str | None = None
    content_length: str | None = None
    request_id: str | None = None
    idempotency_key: str | None = None
    credential: bytes | None = None
    v2_header_length: str | None = None


def _read_headers(scope: Scope) -> _Headers:
    h = _Headers()
    for name, value in scope["headers"]:
        if name == b"content-type":
            h.content_type = value.decode("latin-1")
        elif name == b"content-length":
            h.content_length = value.decode("latin-1")
        elif name == b"x-request-id":
            h.request_id = value.decode("latin-1")
        elif name in (b"idempotency-key", b"x-idempotency-key"):
            h.idempotency_key = value.decode("latin-1")
        elif name in (b"authorization", b"x-api-key"):
            h.credential = value
        elif name == b"inference-header-content-length":
            h.v2_header_length = value.decode("latin-1")
    return h


@functools.lru_cache(maxsize=4096)
def _client_hash(source: bytes) -> str:
    return hashlib.sha256(source).hexdigest()[:16]


def client_id(credential: bytes | None, client: tuple[str, int] | None) -> str:
    """Truncated sha256 of the API key / Authorization value, else of the client address
    (memoised: a server sees the same few clients over and over)."""
    source = credential if credential is not None else (client[0] if client else "-").encode()
    return _client_hash(source)


@dataclass(slots=True)
class _Outcome:
    """What the request-log row and the metrics need to know about one request."""

    model_version: str = ""
    input_hash: str | None = None
    input_length: int | None = None
    input_text: str | None = None
    prediction: str | None = None
    confidence: float | None = None
    cache: str = "none"
    idempotency_hit: bool = False
    started: float = 0.0  # perf_counter() when the request arrived

    def elapsed_ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 3)


class InferenceService:
    def __init__(self, state: ServingState) -> None:
        self.state = state
        self.settings = state.settings
        self.predictor = Predictor(state)
        self.keys = IdempotencyKeys(state)
        self.body = BodyReader(
            limit=state.settings.max_body_bytes, timeout_s=state.settings.body_timeout_s
        )

    # --- the shell: every inference request goes through here ---------------------------------
    async def handle(
        self,
        endpoint: str,
        scope: Scope,
        receive: Receive,
        *,
        model_name: str | None = None,
        model_version: str | None = None,
    ) -> RawResponse | None:
        """Serve one request; ``None`` when the client disconnected before sending its body."""
        state, metrics = self.state, self.state.metrics
        started, arrived = time.perf_counter(), time.time()
        headers = _read_headers(scope)
        request_id = scope.get(REQUEST_ID_KEY) or resolve_request_id(headers.request_id)
        out = _Outcome(
            model_version=state.model.version if state.model is not None else "", started=started
        )
        error_type: str | None = None
        metrics.inflight_requests += 1
        try:
            if endpoint == INFER:
                resp = await self._infer(receive, headers, request_id, out)
            elif endpoint == BATCH:
                resp = await self._batch(receive, headers, request_id, out)
            else:
                resp = await self._v2(receive, headers, out, model_name or "", model_version)
        except FalconError as exc:
            resp, error_type = error_response(exc, request_id), exc.code
        except ClientDisconnectedError:
            resp, error_type = RawResponse(499, b""), "client_disconnected"
        except Exception:  # a bug: answer 500 with the request id, log the traceback
            log.exception("unhandled error", extra={"fields": {"request_id": request_id}})
            bug = FalconError(f"internal error; quote request id {request_id} when reporting it")
            resp, error_type = error_response(bug, request_id), "internal_error"
        finally:
            metrics.inflight_requests -= 1
        latency = time.perf_counter() - started
        resp, error_type = self._log_row(
            endpoint, request_id, arrived, latency, resp, error_type, out, scope, headers
        )
        resp.headers.append((b"x-request-id", request_id.encode()))
        stores = state.stores
        if stores is not None and (degraded := stores.degraded()):
            resp.headers.append((b"falcon-degraded", ",".join(sorted(degraded)).encode()))
            metrics.observe_degraded(degraded)
        if state.faults.active:
            resp.headers.append((b"falcon-faults", (state.faults.header_value() or "").encode()))
        metrics.observe_request(endpoint, resp.status, out.cache, latency)
        if error_type is not None:
            metrics.observe_error(error_type)
        log_access({
            "request_id": request_id, "worker": self.settings.worker_id,
            "release": self.settings.release, "model_version": out.model_version,
            "endpoint": endpoint, "status": resp.status,
            "latency_ms": round(latency * 1000, 3), "cache": out.cache,
            "idempotency_hit": out.idempotency_hit, "error_type": error_type,
        })  # fmt: skip
        return None if resp.status == 499 else resp

    def _log_row(
        self,
        endpoint: str,
        request_id: str,
        arrived: float,
        latency: float,
        resp: RawResponse,
        error_type: str | None,
        out: _Outcome,
        scope: Scope,
        headers: _Headers,
    ) -> tuple[RawResponse, str | None]:
        """Append the request-log row before the response goes out; refuse if it cannot."""
        stores = self.state.stores
        if stores is None:
            return resp, error_type
        record = RequestLogRecord(
            request_id=request_id,
            ts=arrived,
            worker=self.settings.worker_id,
            release=self.settings.release,
            model_version=out.model_version,
            endpoint=endpoint,
            status_code=resp.status,
            latency_ms=latency * 1000,
            input_hash=out.input_hash,
            input_length=out.input_length,
            input_text=out.input_text,
            prediction=out.prediction,
            confidence=out.confidence,
            cache_hit=out.cache == "hit",
            idempotency_hit=out.idempotency_hit,
            client_id=client_id(headers.credential, scope.get("client")),
            error_type=error_type,
        )
        try:
            stores.request_log.append(record)
        except OverloadedError as exc:
            return error_response(exc, request_id), exc.code
        except Exception as exc:  # never send a 2xx whose row was not handed off
            log.exception("request-log append failed", extra={"fields": {"request_id": request_id}})
            err = DependencyError(f"the request log could not record this request ({exc}); retry")
            return error_response(err, request_id), err.code
        return resp, error_type

    # --- endpoints ---------------------------------------------------------------------------
    async def _read(self, receive: Receive, headers: _Headers, *, allow_missing: bool) -> bytes:
        limit = self.settings.max_body_bytes
        check_content_type(headers.content_type, allow_missing=allow_missing)
        check_content_length(headers.content_length, limit)
        return await self.body.read(receive)

    async def _infer(
        self, receive: Receive, headers: _Headers, request_id: str, out: _Outcome
    ) -> RawResponse:
        raw = await self._read(receive, headers, allow_missing=False)
        text = parse_infer(raw, max_chars=self.settings.max_text_chars)
        out.input_hash, out.input_length = text_hash(text), len(text)
        if self.settings.log_inputs:
            out.input_text = text
        key = headers.idempotency_key
        body_hash = ""
        if key is not None:
            body_hash = hashlib.sha256(f"{INFER}\n{text}".encode()).hexdigest()
            replay = await self.keys.lookup(key, body_hash, request_id)
            if replay is not None:
                return self._replayed(replay, out)
        await self._before_inference()
        pred, hit = await self.predictor.one(text, out.input_hash)
        out.cache = "hit" if hit else "miss"
        out.prediction, out.confidence = pred["prediction"], pred["confidence"]
        body = orjson.dumps(
            {
                **pred,
                "model_version": out.model_version,
                "release": self.settings.release,
                "worker_id": self.settings.worker_id,
                "request_id": request_id,
                "cache_hit": hit,
                "idempotency_hit": False,
                "processing_time_ms": out.elapsed_ms(),
            }
        )
        return await self._answer(key, body_hash, body, request_id, out)

    async def _batch(
        self, receive: Receive, headers: _Headers, request_id: str, out: _Outcome
    ) -> RawResponse:
        raw = await self._read(receive, headers, allow_missing=False)
        texts = parse_batch(
            raw, max_chars=self.settings.max_text_chars, max_items=self.settings.max_batch_items
        )
        hashes = [text_hash(t) for t in texts]
        out.input_hash = hashlib.sha256("\n".join(hashes).encode()).hexdigest()
        out.input_length = sum(len(t) for t in texts)
        key = headers.idempotency_key
        body_hash = ""
        if key is not None:
            body_hash = hashlib.sha256(BATCH.encode() + b"\n" + orjson.dumps(texts)).hexdigest()
            replay = await self.keys.lookup(key, body_hash, request_id)
            if replay is not None:
                return self._replayed(replay, out)
        await self._before_inference()
        preds = await self.predictor.many(texts, hashes)
        out.cache = "hit" if all(hit for _, hit in preds) else "miss"
        results = [{**pred, "cache_hit": hit} for pred, hit in preds]
        body = orjson.dumps(
            {
                "results": results,
                "model_version": out.model_version,
                "release": self.settings.release,
                "worker_id": self.settings.worker_id,
                "request_id": request_id,
                "idempotency_hit": False,
                "processing_time_ms": out.elapsed_ms(),
            }
        )
        return await self._answer(key, body_hash, body, request_id, out)

    async def _v2(
        self,
        receive: Receive,
        headers: _Headers,
        out: _Outcome,
        model_name: str,
        model_version: str | None,
    ) -> RawResponse:
        model, _ = self.predictor.ready_model()
        check_served(model, model_name, model_version)
        raw = await self._read(receive, headers, allow_missing=True)
        request = parse_v2_infer(
            raw,
            headers.v2_header_length,
            max_chars=self.settings.max_text_chars,
            max_items=self.settings.max_batch_items,
        )
        texts = request.texts
        if len(texts) == 1:  # most v2 calls: the single-text path, as /infer (profiled)
            out.input_hash, out.input_length = text_hash(texts[0]), len(texts[0])
            await self._before_inference()
            pred, hit = await self.predictor.one(texts[0], out.input_hash)
            preds = [(pred, hit)]
            out.cache = "hit" if hit else "miss"
            out.prediction, out.confidence = pred["prediction"], pred["confidence"]
        else:
            hashes = [text_hash(t) for t in texts]
            out.input_hash = hashlib.sha256("\n".join(hashes).encode()).hexdigest()
            out.input_length = sum(len(t) for t in texts)
            await self._before_inference()
            preds = await self.predictor.many(texts, hashes)
            out.cache = "hit" if all(hit for _, hit in preds) else "miss"
        labels = self.predictor.labels()
        rows = [[pred["probabilities"][label] for label in labels] for pred, _ in preds]
        body, header_length = render_v2_response(
            model_name=model.name,
            model_version=model.version,
            request=request,
            labels=labels,
            rows=rows,
        )
        if header_length is None:
            return RawResponse(200, body)
        return RawResponse(
            200,
            body,
            [(b"inference-header-content-length", str(header_length).encode())],
            content_type=b"application/octet-stream",
        )

    # --- pieces ------------------------------------------------------------------------------
    async def _before_inference(self) -> None:
        faults = self.state.faults
        if faults.active:
            await faults.on_request()

    def _replayed(self, body: dict[str, Any], out: _Outcome) -> RawResponse:
        out.idempotency_hit = True
        out.cache = "none"
        if "prediction" in body:
            out.prediction, out.confidence = body["prediction"], body["confidence"]
        return RawResponse(200, orjson.dumps(body))

    async def _answer(
        self, key: str | None, body_hash: str, body: bytes, request_id: str, out: _Outcome
    ) -> RawResponse:
        if key is not None:
            replay = await self.keys.remember(key, body_hash, body, request_id)
            if replay is not None:
                return self._replayed(replay, out)
        return RawResponse(200, body)
