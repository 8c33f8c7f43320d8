"""The bad-input table, run in-process through both paths (fast path and FastAPI routes).

``CASES`` is also run against a real server process by
``tests/integration/test_api_bad_input.py``: one table, every path.
Each case: a request that must get a clear JSON 4xx with a given status and
error code, ``{"error", "detail", "request_id"}`` — never a 500, never a hang.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import pytest
from fastapi import FastAPI
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from falcon_platform.config.settings import Settings
from falcon_platform.model.registry import LoadedModel
from falcon_platform.serving.app import create_app
from falcon_platform.testing.stores import FakeStores, fake_stores

JSON = {"content-type": "application/json"}
MAX_BODY = 1_048_576


@dataclass(frozen=True)
class Case:
    id: str
    path: str
    body: bytes
    status: int
    error: str
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON))


def _j(obj: object) -> bytes:
    return orjson.dumps(obj)


def _v2(**tensor: object) -> bytes:
    base: dict[str, object] = {"name": "text", "shape": [1], "datatype": "BYTES", "data": ["ok"]}
    base.update(tensor)
    return _j({"inputs": [base]})


V2 = "/v2/models/sentiment/infer"

CASES: list[Case] = [
    Case("empty-text", "/infer", _j({"text": ""}), 422, "invalid_input"),
    Case("whitespace-text", "/infer", _j({"text": " \n\t "}), 422, "invalid_input"),
    Case("text-too-long", "/infer", _j({"text": "a" * 10_001}), 422, "invalid_input"),
    Case("text-is-number", "/infer", _j({"text": 5}), 422, "invalid_input"),
    Case("text-is-null", "/infer", _j({"text": None}), 422, "invalid_input"),
    Case("text-is-list", "/infer", _j({"text": ["a"]}), 422, "invalid_input"),
    Case("missing-field", "/infer", _j({}), 422, "invalid_input"),
    Case("extra-field", "/infer", _j({"text": "fine", "lang": "en"}), 422, "invalid_input"),
    Case("top-level-array", "/infer", _j(["fine"]), 422, "invalid_input"),
    Case("invalid-json", "/infer", b'{"text": "fine"', 400, "malformed_request"),
    Case("empty-body", "/infer", b"", 400, "malformed_request"),
    Case("not-utf8", "/infer", b'{"text": "caf\xe9 \xff"}', 400, "malformed_request"),
    Case(
        "wrong-content-type",
        "/infer",
        _j({"text": "fine"}),
        415,
        "unsupported_media_type",
        {"content-type": "text/plain"},
    ),
    Case(
        "form-content-type",
        "/infer",
        b"text=fine",
        415,
        "unsupported_media_type",
        {"content-type": "application/x-www-form-urlencoded"},
    ),
    Case("missing-content-type", "/infer", _j({"text": "fine"}), 415, "unsupported_media_type", {}),
    Case("body-over-limit", "/infer", _j({"text": "a" * MAX_BODY}), 413, "payload_too_large"),
    Case(
        "bad-idempotency-key",
        "/infer",
        _j({"text": "fine"}),
        400,
        "malformed_request",
        {**JSON, "idempotency-key": "has spaces in it"},
    ),
    Case(
        "latin-1-charset",
        "/infer",
        _j({"text": "fine"}),
        415,
        "unsupported_media_type",
        {"content-type": "application/json; charset=latin-1"},
    ),
    Case("lone-surrogate", "/infer", b'{"text": "\\ud800"}', 400, "malformed_request"),
    Case("duplicate-key", "/infer", b'{"text": "a", "text": "b"}', 400, "malformed_request"),
    Case(
        "duplicate-key-non-string", "/infer", b'{"text": 1, "text": "b"}', 400, "malformed_request"
    ),
    Case(
        "batch-duplicate-key",
        "/infer/batch",
        b'{"texts": ["a"], "texts": ["b"]}',
        400,
        "malformed_request",
    ),
    Case(
        "two-idempotency-keys",
        "/infer",
        _j({"text": "fine"}),
        400,
        "malformed_request",
        {**JSON, "idempotency-key": "k-1", "x-idempotency-key": "k-2"},
    ),
    Case(
        "bad-request-id",
        "/infer",
        _j({"text": "fine"}),
        400,
        "malformed_request",
        {**JSON, "x-request-id": "a" * 129},
    ),
    Case("batch-empty", "/infer/batch", _j({"texts": []}), 422, "invalid_input"),
    Case("batch-over-limit", "/infer/batch", _j({"texts": ["a"] * 257}), 422, "invalid_input"),
    Case("batch-blank-item", "/infer/batch", _j({"texts": ["ok", " "]}), 422, "invalid_input"),
    Case("batch-not-list", "/infer/batch", _j({"texts": "ok"}), 422, "invalid_input"),
    Case("batch-number-item", "/infer/batch", _j({"texts": ["ok", 1]}), 422, "invalid_input"),
    Case("batch-invalid-json", "/infer/batch", b"{texts: []}", 400, "malformed_request"),
    Case("v2-unknown-model", "/v2/models/nope/infer", _v2(), 404, "not_found"),
    Case("v2-unknown-version", "/v2/models/sentiment/versions/0/infer", _v2(), 404, "not_found"),
    Case("v2-wrong-datatype", V2, _v2(datatype="FP32", data=[1.0]), 400, "malformed_request"),
    Case("v2-shape-mismatch", V2, _v2(shape=[2]), 400, "malformed_request"),
    Case("v2-bad-shape", V2, _v2(shape=[1, 2], data=["a", "b"]), 400, "malformed_request"),
    Case("v2-number-data", V2, _v2(data=[1]), 400, "malformed_request"),
    Case("v2-blank-text", V2, _v2(data=[" "]), 422, "invalid_input"),
    Case("v2-text-too-long", V2, _v2(data=["a" * 10_001]), 422, "invalid_input"),
    Case("v2-too-many-texts", V2, _v2(shape=[257], data=["a"] * 257), 422, "invalid_input"),
    Case("v2-wrong-input-name", V2, _v2(name="sentence"), 400, "malformed_request"),
    Case(
        "v2-model-name-disagrees",
        V2,
        _j({**orjson.loads(_v2()), "model_name": "other"}),
        400,
        "malformed_request",
    ),
    Case(
        "v2-duplicate-key",
        V2,
        b'{"inputs": [{"name": "text", "name": "x", "shape": [1], "datatype": "BYTES", '
        b'"data": ["ok"]}]}',
        400,
        "malformed_request",
    ),
    Case(
        "v2-no-data",
        V2,
        _j({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES"}]}),
        400,
        "malformed_request",
    ),
    Case("v2-no-inputs", V2, _j({"inputs": []}), 400, "malformed_request"),
    Case(
        "v2-two-inputs",
        V2,
        _j({"inputs": [orjson.loads(_v2())["inputs"][0]] * 2}),
        400,
        "malformed_request",
    ),
    Case("v2-invalid-json", V2, b"{", 400, "malformed_request"),
    Case(
        "v2-unknown-output",
        V2,
        _j({**orjson.loads(_v2()), "outputs": [{"name": "x"}]}),
        400,
        "malformed_request",
    ),
    Case(
        "v2-bad-binary-header",
        V2,
        _v2(),
        400,
        "malformed_request",
        {"inference-header-content-length": "999999"},
    ),
    Case(
        "v2-wrong-content-type",
        V2,
        _v2(),
        415,
        "unsupported_media_type",
        {"content-type": "text/plain"},
    ),
]

TRAIN = [
    ("great product, love it", "positive"),
    ("excellent service and fast delivery", "positive"),
    ("terrible, it broke after a day", "negative"),
    ("awful support, never again", "negative"),
    ("it arrived on tuesday", "neutral"),
    ("the box is blue", "neutral"),
]


def tiny_model(version: str = "tiny-1") -> LoadedModel:
    """A real (small) TF-IDF + logistic-regression model, trained in milliseconds."""
    texts, labels = zip(*TRAIN, strict=True)
    pipe = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(texts, labels)
    classes = [str(c) for c in pipe.classes_]
    order = ("negative", "neutral", "positive")
    return LoadedModel(
        name="sentiment",
        version=version,
        sha256="0" * 64,
        labels=order,
        metadata={"source": "tests"},
        estimator=pipe,
        columns=tuple(classes.index(label) for label in order),
    )


def settings_for(tmp_path: Path, **overrides: object) -> Settings:
    return Settings(home=tmp_path / "home", **overrides)  # type: ignore[arg-type]


class Running:
    def __init__(self, app: FastAPI, stores: FakeStores, client: httpx.AsyncClient) -> None:
        self.app, self.stores, self.client = app, stores, client


@pytest.fixture(params=[True, False], ids=["fast-path", "fastapi-route"])
async def running(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Running]:
    """The app in-process, lifespan started, through the fast path or the FastAPI routes."""
    stores = fake_stores()
    app = create_app(
        settings_for(tmp_path, fast_path=request.param), model=tiny_model(), stores=stores
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://falcon") as client:
            yield Running(app, stores, client)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_bad_input_gets_clear_json_4xx_on_both_paths(running: Running, case: Case) -> None:
    """Every bad input: the table's status and code, a detail, the request id in body+header."""
    resp = await running.client.post(case.path, content=case.body, headers=case.headers)
    assert resp.status_code == case.status, resp.text
    body = resp.json()
    assert set(body) == {"error", "detail", "request_id"}
    assert body["error"] == case.error
    assert len(body["detail"]) > 15
    assert body["request_id"] == resp.headers["x-request-id"]
    assert resp.headers["content-type"] == "application/json"


async def test_bad_inputs_are_logged_with_status_and_error_type(running: Running) -> None:
    """A 4xx still gets its request-log row, with the status code and the error type."""
    resp = await running.client.post("/infer", json={"text": " "})
    rows = running.stores.request_log.rows
    assert [(r.request_id, r.status_code, r.error_type) for r in rows] == [
        (resp.json()["request_id"], 422, "invalid_input")
    ]


async def test_good_requests_get_the_same_answers_on_both_paths(running: Running) -> None:
    """Success bodies match too: same fields, same numbers, whichever path served them."""
    single = await running.client.post("/infer", json={"text": "great product"}, headers=JSON)
    batch = await running.client.post("/infer/batch", json={"texts": ["great product", "awful"]})
    v2 = await running.client.post("/v2/models/sentiment/infer", content=_v2(data=["awful"]))
    assert [r.status_code for r in (single, batch, v2)] == [200, 200, 200]
    assert set(single.json()) == {
        "prediction", "confidence", "probabilities", "model_version", "release", "worker_id",
        "request_id", "cache_hit", "idempotency_hit", "processing_time_ms",
    }  # fmt: skip
    assert batch.json()["results"][0]["probabilities"] == single.json()["probabilities"]
    awful = batch.json()["results"][1]["probabilities"]
    assert v2.json()["outputs"][1]["data"] == [
        awful[k] for k in ("negative", "neutral", "positive")
    ]


@pytest.mark.parametrize(
    ("case_id", "words"),
    [
        ("lone-surrogate", "surrogate"),
        ("duplicate-key", "twice"),
        ("latin-1-charset", "UTF-8"),
        ("two-idempotency-keys", "different keys"),
        ("v2-wrong-input-name", "'text'"),
        ("v2-model-name-disagrees", "does not match"),
    ],
)
async def test_details_give_the_true_reason(running: Running, case_id: str, words: str) -> None:
    case = next(c for c in CASES if c.id == case_id)
    resp = await running.client.post(case.path, content=case.body, headers=case.headers)
    assert words in resp.json()["detail"]


async def test_v2_body_may_name_the_model_and_carry_an_id_and_parameters(
    running: Running,
) -> None:
    """What KServe's client sends: model_name (and model_version) agreeing with the URL, an id,
    request parameters."""
    tensor = orjson.loads(_v2(data=["great product"]))["inputs"][0]
    bodies = [
        {"id": "k-1", "model_name": "sentiment", "inputs": [tensor]},
        {"id": "k-2", "model_name": "sentiment", "inputs": [tensor], "parameters": {"x": 1}},
        {"model_name": "sentiment", "model_version": "tiny-1", "inputs": [tensor]},
    ]
    urls = [V2, V2, "/v2/models/sentiment/versions/tiny-1/infer"]
    for body, url in zip(bodies, urls, strict=True):
        resp = await running.client.post(url, content=_j(body), headers=JSON)
        assert resp.status_code == 200, resp.text
        assert resp.json().get("id") == body.get("id")
