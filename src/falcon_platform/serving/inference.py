"""The path of an inference request, shared by the FastAPI routes and the raw-ASGI fast path.

``InferenceService.handle(endpoint, scope, receive)`` does everything after
routing: headers, request id, body limits, validation, idempotency, cache,
micro-batcher, response body, the request-log row (appended *before* the
response is sent), metrics and the access log line. It returns a
:class:`RawResponse`; the caller only sends it. Because both paths call this one
function, their validation rules and error bodies cannot drift apart.
"""

from __future__ import annotations

import asyncio
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
    MalformedRequestError,
    OverloadedError,
)
from falcon_platform.observability.logging import log_access
from falcon_platform.serving.body import BodyReader, ClientDisconnectedError
from falcon_platform.serving.errors import (
    REQUEST_ID_KEY,
    REQUEST_ID_RULE,
    RawResponse,
    check_client_request_id,
    error_response,
    new_request_id,
)
from falcon_platform.serving.idempotency import IdempotencyKeys
from falcon_platform.serving.predictor import Predictor, Row, text_hash
from falcon_platform.serving.state import ServingState
from falcon_platform.serving.v2 import (
    V2Request,
    check_served,
    parse_v2_infer,
    render_v2_response,
)
from falcon_platform.serving.validation import (
    check_content_length,
    check_content_type,
    parse_batch,
    parse_infer,
)
from falcon_platform.stores.base import RequestLogRecord
from falcon_platform.stores.segments import encode_row

INFER = "/infer"
BATCH = "/infer/batch"
V2_INFER = "/v2/infer"

log = logging.getLogger("falcon.serving")


@dataclass(slots=True)
class _Headers:
    content_type: str | None = None
    content_length: str | None = None
    request_id: str | None = None  # the client's X-Request-ID, unchecked
    idempotency_key: str | None = None
    credential: bytes | None = None
    v2_header_length: str | None = None
    problem: str | None = None  # a header sent twice with different values


def _read_headers(scope: Scope) -> _Headers:
    h = _Headers()
    for name, value in scope["headers"]:
        if name == b"content-type":
            h.content_type = value.decode("latin-1")
        elif name == b"content-length":
            h.content_length = value.decode("latin-1")
        elif name == b"x-request-id":
            text = value.decode("latin-1")
            if h.request_id is not None and text != h.request_id:
                h.problem = f"{REQUEST_ID_RULE}; got two different values"
            h.request_id = text
        elif name in (b"idempotency-key", b"x-idempotency-key"):
            text = value.decode("latin-1")
            if h.idempotency_key is not None and text != h.idempotency_key:
                h.problem = (
                    "Idempotency-Key and X-Idempotency-Key (or two of either) carry different "
                    "keys; send one key, in one header"
                )
            h.idempotency_key = text
        elif name in (b"authorization", b"x-api-key"):
            h.credential = value
        elif name == b"inference-header-content-length":
            h.v2_header_length = value.decode("latin-1")
    return h


@functools.lru_cache(maxsize=4096)
def _client_hash(source: bytes) -> str:
    return hashlib.sha256(source).hexdigest()[:16]


def client_id(credential: bytes | None, client: tuple[str, int] | None) -> str:
    """Who sent a request: truncated sha256 of the API key / Authorization value, else of the
    client address (memoised: a server sees the same few clients over and over).

    The request log's ``client_id`` column and the scope of idempotency keys."""
    source = credential if credential is not None else (client[0] if client else "-").encode()
    return _client_hash(source)


@dataclass(slots=True)
class _Outcome:
    """What the request-log row and the metrics need to know about one request."""

    model_version: str = ""
    started: float = 0.0  # perf_counter() when the request arrived
    input_hash: str | None = None
    input_length: int | None = None
    input_text: str | None = None
    prediction: str | None = None
    confidence: float | None = None
    cache: str = "none"
    idempotency_hit: bool = False

    def elapsed_ms(self) -> float:
        return milliseconds(time.perf_counter() - self.started)


def milliseconds(seconds: float) -> float:
    """A duration in milliseconds to the microsecond, as ``round(seconds * 1000, 3)`` gives it
    (equal on 10^6 random latencies) at half the cost: ``round`` to 3 digits goes through
    decimal text (~3.5k instructions), twice per request.

    >>> milliseconds(0.0012344), milliseconds(0.0012346), milliseconds(0.0)
    (1.234, 1.235, 0.0)
    """
    return int(seconds * 1_000_000 + 0.5) / 1000


@dataclass(slots=True)
class _Inputs:
    """A validated request: its texts, and what idempotency and the response need."""

    texts: list[str]
    single: bool  # one text, answered in /infer's shape (or a one-text v2 request)
    idempotent: bool  # the endpoint honours Idempotency-Key
    v2: V2Request | None = None


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
        synthetic: bool = False,
    ) -> RawResponse | None:
        """Serve one request; ``None`` when the client disconnected before sending its body.

        ``synthetic``: a canary's synthetic request (from the supervisor, on the private admin
        socket): served the same way, but counted only in ``falcon_synthetic_*`` and never in
        the request log, so no SLO, alert or incident counts it as user traffic."""
        state, metrics = self.state, self.state.metrics
        started, arrived = time.perf_counter(), time.time()
        headers = _read_headers(scope)
        request_id = scope.get(REQUEST_ID_KEY) or new_request_id()
        client = client_id(headers.credential, scope.get("client"))
        sent_id: str | None = None
        out = _Outcome(state.model.version if state.model is not None else "", started)
        error_type: str | None = None
        metrics.inflight_requests += 1
        try:
            if headers.problem is not None:
                raise MalformedRequestError(headers.problem)
            sent_id = check_client_request_id(headers.request_id)
            resp = await self._serve(
                endpoint, receive, headers, request_id, client, out, model_name, model_version
            )
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
        if synthetic:
            metrics.observe_synthetic(resp.status, latency)
            resp.headers.append((b"x-request-id", (sent_id or request_id).encode()))
            return None if resp.status == 499 else resp
        if state.stores is not None:  # the request-log row, appended before the response goes out
            try:
                written = self._append_row(
                    endpoint, request_id, sent_id, client, arrived, latency, resp, error_type, out
                )
                if written is not None:
                    await written
            except OverloadedError as exc:
                resp, error_type = error_response(exc, request_id), exc.code
            except Exception as exc:  # never send a 2xx whose row was not handed off
                log.exception(
                    "request-log append failed", extra={"fields": {"request_id": request_id}}
                )
                err = DependencyError(
                    f"the request log could not record this request ({exc}); retry"
                )
                resp, error_type = error_response(err, request_id), err.code
        resp.headers.append((b"x-request-id", (sent_id or request_id).encode()))
        stores = state.stores
        if stores is not None and (degraded := stores.degraded()):
            resp.headers.append((b"falcon-degraded", ",".join(sorted(degraded)).encode()))
            metrics.observe_degraded(degraded)
        if state.faults.active:
            resp.headers.append((b"falcon-faults", (state.faults.header_value() or "").encode()))
        metrics.observe_request(endpoint, resp.status, out.cache, latency)
        if error_type is not None:
            metrics.observe_error(error_type)
        s = self.settings
        log_access(
            request_id, sent_id, s.worker_id, s.release, out.model_version, endpoint, resp.status,
            milliseconds(latency), out.cache, out.idempotency_hit, error_type,
        )  # fmt: skip
        return None if resp.status == 499 else resp

    def _append_row(
        self,
        endpoint: str,
        request_id: str,
        sent_id: str | None,
        client: str,
        arrived: float,
        latency: float,
        resp: RawResponse,
        error_type: str | None,
        out: _Outcome,
    ) -> asyncio.Future[None] | None:
        """Hand the request-log row to the sink: the future of this loop tick's write (to await
        before responding) when the sink writes per tick, else ``None`` (written already).
        Raises what the sink raises (``OverloadedError`` when its disk budget is spent).
        Not a coroutine: the caller awaits the tick's future itself (one frame fewer per hit)."""
        assert self.state.stores is not None
        s, sink = self.settings, self.state.stores.request_log
        # RequestLogRecord's fields, in order (positional: keywords cost ~3x to match).
        row = (
            request_id, arrived, s.worker_id, s.release, out.model_version, endpoint, resp.status,
            latency * 1000, out.input_hash, out.input_length, out.input_text, out.prediction,
            out.confidence, out.cache == "hit", out.idempotency_hit, client, error_type, sent_id,
        )  # fmt: skip
        # One write per loop tick for every request of the tick, when the sink can; the line
        # encoded from the fields, with no RequestLogRecord built in between.
        in_tick = getattr(sink, "append_line_in_tick", None)
        if in_tick is not None:
            tick: asyncio.Future[None] = in_tick(encode_row(*row))
            return tick
        sink.append(RequestLogRecord(*row))
        return None

    # --- the one path: read → validate → idempotency → inference → response --------------------
    async def _serve(
        self,
        endpoint: str,
        receive: Receive,
        headers: _Headers,
        request_id: str,
        client: str,
        out: _Outcome,
        model_name: str | None,
        model_version: str | None,
    ) -> RawResponse:
        if endpoint == V2_INFER:  # an unknown model is a 404 before the body is read
            check_served(self.predictor.ready_model()[0], model_name or "", model_version)
        check_content_type(headers.content_type, allow_missing=endpoint == V2_INFER)
        check_content_length(headers.content_length, self.settings.max_body_bytes)
        raw = await self.body.read(receive)
        inputs = self._parse(endpoint, raw, headers, model_name, model_version)
        texts = inputs.texts
        if inputs.single:
            out.input_hash, out.input_length = text_hash(texts[0]), len(texts[0])
            if self.settings.log_inputs:
                out.input_text = texts[0]
            hashes = [out.input_hash]
        else:
            hashes = [text_hash(t) for t in texts]
            out.input_hash = hashlib.sha256("\n".join(hashes).encode()).hexdigest()
            out.input_length = sum(len(t) for t in texts)
        key = headers.idempotency_key if inputs.idempotent else None
        body_hash = ""
        if key is not None:
            body_hash = hashlib.sha256(f"{endpoint}\n{out.input_hash}".encode()).hexdigest()
            replay = await self.keys.lookup(client, key, body_hash, request_id)
            if replay is not None:
                return self._replayed(replay, out)
        faults = self.state.faults
        if faults.active:
            await faults.on_request()
        if inputs.single:
            row, hit = await self.predictor.one(texts[0], hashes[0])
            rows = [(row, hit)]
            best = row.index(max(row))  # the first maximum, as argmax
            out.prediction, out.confidence = self.predictor.labels()[best], row[best]
            out.cache = "hit" if hit else "miss"
        else:
            rows = await self.predictor.many(texts, hashes)
            out.cache = "hit" if all(hit for _, hit in rows) else "miss"
        if inputs.v2 is not None:
            return self._v2_response(inputs.v2, [row for row, _ in rows])
        body = self._body(endpoint, rows, request_id, out)
        if key is not None:
            replay = await self.keys.remember(client, key, body_hash, body, request_id)
            if replay is not None:
                return self._replayed(replay, out)
        return RawResponse(200, body)

    def _parse(
        self,
        endpoint: str,
        raw: bytes,
        headers: _Headers,
        model_name: str | None,
        model_version: str | None,
    ) -> _Inputs:
        s = self.settings
        if endpoint == INFER:
            return _Inputs([parse_infer(raw, max_chars=s.max_text_chars)], True, True)
        if endpoint == BATCH:
            texts = parse_batch(raw, max_chars=s.max_text_chars, max_items=s.max_batch_items)
            return _Inputs(texts, False, True)
        model = self.predictor.ready_model()[0]
        request = parse_v2_infer(
            raw,
            headers.v2_header_length,
            max_chars=s.max_text_chars,
            max_items=s.max_batch_items,
            model_name=model_name or model.name,
            model_version=model_version,
        )
        # Most v2 calls carry one text: the single-text path, as /infer (profiled).
        return _Inputs(request.texts, len(request.texts) == 1, False, request)

    def _body(
        self, endpoint: str, rows: list[tuple[Row, bool]], request_id: str, out: _Outcome
    ) -> bytes:
        s, labels = self.settings, self.predictor.labels()
        if endpoint == INFER:  # Predictor.prediction's fields, built in place (one dict)
            row, hit = rows[0]
            return orjson.dumps(
                {
                    "prediction": out.prediction,
                    "confidence": out.confidence,
                    "probabilities": dict(zip(labels, row, strict=True)),
                    "model_version": out.model_version,
                    "release": s.release,
                    "worker_id": s.worker_id,
                    "request_id": request_id,
                    "cache_hit": hit,
                    "idempotency_hit": False,
                    "processing_time_ms": out.elapsed_ms(),
                }
            )
        return orjson.dumps(
            {
                "results": [
                    {**self.predictor.prediction(row), "cache_hit": hit} for row, hit in rows
                ],
                "model_version": out.model_version,
                "release": s.release,
                "worker_id": s.worker_id,
                "request_id": request_id,
                "idempotency_hit": False,
                "processing_time_ms": out.elapsed_ms(),
            }
        )

    def _v2_response(self, request: V2Request, rows: list[Row]) -> RawResponse:
        model = self.predictor.ready_model()[0]
        labels = self.predictor.labels()
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

    def _replayed(self, body: dict[str, Any], out: _Outcome) -> RawResponse:
        out.idempotency_hit = True
        out.cache = "none"
        if "prediction" in body:
            out.prediction, out.confidence = body["prediction"], body["confidence"]
        return RawResponse(200, orjson.dumps(body))
