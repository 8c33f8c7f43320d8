"""Component tests: the app in-process (httpx ASGITransport), a real tiny model, fake stores."""

from __future__ import annotations

import asyncio
import math
import re
import struct
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from test_serving_cases import settings_for, tiny_model

from falcon_platform.chaos.faults import FaultInjector
from falcon_platform.observability import names
from falcon_platform.serving.app import create_admin_app, create_app
from falcon_platform.testing.stores import FakeStores, fake_stores

INFER_FIELDS = {
    "prediction", "confidence", "probabilities", "model_version", "release", "worker_id",
    "request_id", "cache_hit", "idempotency_hit", "processing_time_ms",
}  # fmt: skip


async def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://falcon")


@pytest.fixture
async def stores() -> FakeStores:
    return fake_stores()


@pytest.fixture
async def app(tmp_path: Path, stores: FakeStores) -> AsyncIterator[FastAPI]:
    app = create_app(
        settings_for(tmp_path, worker_id="w7", release="r3"), model=tiny_model(), stores=stores
    )
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with await _client(app) as client:
        yield client


async def test_infer_returns_the_original_falcon_fields(client: httpx.AsyncClient) -> None:
    """/infer answers exactly the original field names; probabilities sum to 1; argmax wins."""
    resp = await client.post("/infer", json={"text": "great product, love it"})
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == INFER_FIELDS
    assert math.isclose(sum(body["probabilities"].values()), 1.0, rel_tol=1e-9)
    assert set(body["probabilities"]) == {"negative", "neutral", "positive"}
    assert body["prediction"] == max(body["probabilities"], key=body["probabilities"].get)
    assert body["confidence"] == body["probabilities"][body["prediction"]]
    assert (body["worker_id"], body["release"], body["model_version"]) == ("w7", "r3", "tiny-1")
    assert body["request_id"] == resp.headers["x-request-id"]
    assert body["cache_hit"] is False
    assert body["idempotency_hit"] is False


async def test_client_request_id_is_echoed_and_logged_beside_the_servers_own(
    client: httpx.AsyncClient, stores: FakeStores
) -> None:
    """The body's request_id (the log's key) is always the server's; X-Request-ID is echoed."""
    ok = await client.post("/infer", json={"text": "fine"}, headers={"x-request-id": "abc-123"})
    plain = await client.post("/infer", json={"text": "fine"})
    assert ok.headers["x-request-id"] == "abc-123"
    assert ok.json()["request_id"] != "abc-123"
    assert len(ok.json()["request_id"]) == 32
    assert plain.headers["x-request-id"] == plain.json()["request_id"]
    rows = stores.request_log.rows
    assert [(r.request_id, r.client_request_id) for r in rows] == [
        (ok.json()["request_id"], "abc-123"),
        (plain.json()["request_id"], None),
    ]


@pytest.mark.parametrize(
    "sent",
    [
        [("x-request-id", "a b")],
        [("x-request-id", "a" * 129)],
        [("x-request-id", "")],
        [("x-request-id", "one"), ("x-request-id", "two")],
    ],
    ids=["space", "129-chars", "empty", "two-values"],
)
@pytest.mark.parametrize("path", ["/infer", "/healthz"])
async def test_invalid_client_request_id_is_refused_with_the_rule(
    client: httpx.AsyncClient, stores: FakeStores, sent: list[tuple[str, str]], path: str
) -> None:
    if path == "/infer":
        resp = await client.post(path, json={"text": "fine"}, headers=sent)
    else:
        resp = await client.get(path, headers=sent)
    assert resp.status_code == 400
    body = resp.json()
    assert body["error"] == "malformed_request"
    assert "1 to 128 characters of A-Z a-z 0-9 . _ : -" in body["detail"]
    assert resp.headers["x-request-id"] == body["request_id"]
    if path == "/infer":  # an inference request is logged, 400 and all
        assert [(r.status_code, r.client_request_id) for r in stores.request_log.rows] == [
            (400, None)
        ]


async def test_duplicate_and_predicted_client_ids_still_get_one_row_each(
    client: httpx.AsyncClient, stores: FakeStores
) -> None:
    """Three requests with one X-Request-ID, then requests naming earlier server ids: every
    2xx has its own row under its own key (the old design kept one row of the three)."""
    same = [
        await client.post("/infer", json={"text": f"t{i}"}, headers={"x-request-id": "dup"})
        for i in range(3)
    ]
    taken = [r.json()["request_id"] for r in same]
    stolen = [
        await client.post("/infer", json={"text": "x"}, headers={"x-request-id": rid})
        for rid in taken
    ]
    answers = [r.json()["request_id"] for r in same + stolen]
    assert all(r.status_code == 200 for r in same + stolen)
    assert len(set(answers)) == 6
    assert sorted(r.request_id for r in stores.request_log.rows) == sorted(answers)


async def test_idempotency_keys_are_scoped_to_the_client(
    client: httpx.AsyncClient, stores: FakeStores
) -> None:
    """Another client's key never replays (or reveals) the first client's answer."""
    alice = {"Idempotency-Key": "order-1", "Authorization": "Bearer alice"}
    mallory = {"Idempotency-Key": "order-1", "Authorization": "Bearer mallory"}
    first = await client.post("/infer", json={"text": "pay me"}, headers=alice)
    other = await client.post("/infer", json={"text": "pay me"}, headers=mallory)
    clash = await client.post("/infer", json={"text": "something else"}, headers=mallory)
    again = await client.post("/infer", json={"text": "pay me"}, headers=alice)
    assert first.json()["idempotency_hit"] is False
    assert other.json()["idempotency_hit"] is False  # a fresh answer, not alice's
    assert clash.status_code == 422  # mallory's own key, reused for another body
    assert again.json()["idempotency_hit"] is True  # alice's stored answer


async def test_idempotency_conflict_does_not_say_when_the_key_was_used(
    client: httpx.AsyncClient,
) -> None:
    h = {"Idempotency-Key": "k-9"}
    await client.post("/infer", json={"text": "one"}, headers=h)
    clash = await client.post("/infer", json={"text": "two"}, headers=h)
    assert clash.status_code == 422
    assert not re.search(r"\d{4}-\d{2}-\d{2}|\d{2}:\d{2}", clash.json()["detail"])


async def test_both_idempotency_headers_with_different_keys_are_refused(
    client: httpx.AsyncClient,
) -> None:
    same = {"Idempotency-Key": "k-1", "X-Idempotency-Key": "k-1"}
    differ = {"Idempotency-Key": "k-1", "X-Idempotency-Key": "k-2"}
    assert (await client.post("/infer", json={"text": "a"}, headers=same)).status_code == 200
    resp = await client.post("/infer", json={"text": "a"}, headers=differ)
    assert resp.status_code == 400
    assert "different keys" in resp.json()["detail"]


async def test_second_identical_text_is_a_cache_hit(client: httpx.AsyncClient) -> None:
    first = await client.post("/infer", json={"text": "the box is blue"})
    second = await client.post("/infer", json={"text": "the box is blue"})
    assert first.json()["cache_hit"] is False
    assert second.json()["cache_hit"] is True
    assert second.json()["probabilities"] == first.json()["probabilities"]


async def test_new_model_version_never_reads_old_cached_answers(
    tmp_path: Path, stores: FakeStores
) -> None:
    """Two apps sharing one cache: version 2 misses what version 1 cached."""
    for version, expect_hit in (("v1", False), ("v1", True), ("v2", False)):
        app = create_app(settings_for(tmp_path), model=tiny_model(version), stores=stores)
        async with app.router.lifespan_context(app), await _client(app) as client:
            resp = await client.post("/infer", json={"text": "cached across versions"})
            assert (resp.json()["model_version"], resp.json()["cache_hit"]) == (version, expect_hit)


@pytest.mark.parametrize("header", ["Idempotency-Key", "X-Idempotency-Key"])
async def test_idempotency_replays_same_body_and_refuses_a_different_one(
    client: httpx.AsyncClient, stores: FakeStores, header: str
) -> None:
    first = await client.post("/infer", json={"text": "pay me"}, headers={header: "key-1"})
    again = await client.post("/infer", json={"text": "pay me"}, headers={header: "key-1"})
    other = await client.post("/infer", json={"text": "other"}, headers={header: "key-1"})
    assert first.json()["idempotency_hit"] is False
    assert again.json()["idempotency_hit"] is True
    assert again.json()["probabilities"] == first.json()["probabilities"]
    assert again.json()["request_id"] == again.headers["x-request-id"] != first.json()["request_id"]
    assert other.status_code == 422
    assert other.json()["error"] == "idempotency_conflict"
    assert "different request" in other.json()["detail"]
    assert [r.idempotency_hit for r in stores.request_log.rows] == [False, True, False]


async def test_batch_returns_one_result_per_text_in_order(client: httpx.AsyncClient) -> None:
    texts = ["great product", "awful support", "the box is blue", "great product"]
    resp = await client.post("/infer/batch", json={"texts": texts})
    body = resp.json()
    assert resp.status_code == 200
    assert len(body["results"]) == 4
    assert body["results"][0]["probabilities"] == body["results"][3]["probabilities"]
    single = await client.post("/infer", json={"text": "awful support"})
    assert single.json()["probabilities"] == body["results"][1]["probabilities"]


async def test_batch_idempotency_replays(client: httpx.AsyncClient) -> None:
    h = {"Idempotency-Key": "batch-1"}
    first = await client.post("/infer/batch", json={"texts": ["a b", "c d"]}, headers=h)
    again = await client.post("/infer/batch", json={"texts": ["a b", "c d"]}, headers=h)
    assert again.json()["idempotency_hit"] is True
    assert again.json()["results"] == first.json()["results"]


async def test_v2_json_infer_returns_labels_and_fp32_probabilities(
    client: httpx.AsyncClient,
) -> None:
    req = {"id": "r1", "inputs": [
        {"name": "text", "shape": [2, 1], "datatype": "BYTES", "data": [["great"], ["awful"]]}
    ]}  # fmt: skip
    resp = await client.post("/v2/models/sentiment/infer", json=req)
    body = resp.json()
    assert resp.status_code == 200, resp.text
    assert (body["model_name"], body["model_version"], body["id"]) == ("sentiment", "tiny-1", "r1")
    label, probs = body["outputs"]
    assert (label["name"], label["datatype"], label["shape"]) == ("label", "BYTES", [2])
    assert (probs["name"], probs["datatype"], probs["shape"]) == ("probabilities", "FP32", [2, 3])
    assert math.isclose(sum(probs["data"][:3]), 1.0, rel_tol=1e-6)


async def test_v2_binary_input_and_output(client: httpx.AsyncClient) -> None:
    """Triton's binary extension: BYTES in as length-prefixed bytes, FP32 out as raw floats."""
    texts = [b"great", "caf\u00e9 awful".encode()]
    blob = b"".join(struct.pack("<I", len(t)) + t for t in texts)
    head = (
        b'{"inputs":[{"name":"text","shape":[2],"datatype":"BYTES","parameters":'
        b'{"binary_data_size":' + str(len(blob)).encode() + b'}}],"parameters":'
        b'{"binary_data_output":true}}'
    )
    resp = await client.post(
        "/v2/models/sentiment/infer",
        content=head + blob,
        headers={"inference-header-content-length": str(len(head))},
    )
    assert resp.status_code == 200, resp.text
    n = int(resp.headers["inference-header-content-length"])
    import orjson

    header = orjson.loads(resp.content[:n])
    sizes = [o["parameters"]["binary_data_size"] for o in header["outputs"]]
    probs = struct.unpack("<6f", resp.content[n + sizes[0] :])
    assert math.isclose(sum(probs[:3]), 1.0, rel_tol=1e-5)


async def test_v2_metadata_and_health(client: httpx.AsyncClient) -> None:
    meta = (await client.get("/v2/models/sentiment")).json()
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert meta["versions"] == ["tiny-1"]
    assert (await client.get("/v2/health/live")).status_code == 200
    assert (await client.get("/v2/health/ready")).json() == {"ready": True}
    assert (await client.get("/v2/models/sentiment/ready")).status_code == 200
    missing = await client.get("/v2/models/other")
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")


async def test_drain_fails_readiness_at_once_on_public_and_admin(app: FastAPI) -> None:
    admin = create_admin_app(app)
    async with (
        await _client(app) as client,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=admin), base_url="http://a") as adm,
    ):
        assert (await client.get("/readyz")).status_code == 200
        assert (await adm.get("/readyz")).status_code == 200
        app.state.falcon.begin_drain()
        for c in (client, adm):
            resp = await c.get("/readyz")
            assert (resp.status_code, resp.json()["status"]) == (503, "draining")
            assert (await c.get("/healthz")).status_code == 200
        # requests still in flight or on open connections are answered while draining
        assert (await client.post("/infer", json={"text": "still served"})).status_code == 200


async def test_degraded_dependency_keeps_ready_and_is_named_in_a_header(
    client: httpx.AsyncClient, stores: FakeStores
) -> None:
    stores.breakers["redis"].record_failure()
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["degraded"] == ["redis"]
    resp = await client.post("/infer", json={"text": "fine"})
    assert resp.status_code == 200
    assert resp.headers["falcon-degraded"] == "redis"
    metrics = (await client.get("/metrics")).text
    assert sample(metrics, names.DEGRADED_RESPONSES, dependency="redis", worker="w7") == 1


async def test_full_request_log_refuses_with_503_and_retry_after(
    client: httpx.AsyncClient, stores: FakeStores
) -> None:
    """The row cannot be handed off → no 2xx (refuse rather than lose the row)."""
    stores.request_log.full = True
    resp = await client.post("/infer", json={"text": "fine"})
    assert resp.status_code == 503
    assert resp.json()["error"] == "overloaded"
    assert resp.headers["retry-after"] == "5"


async def test_request_log_row_has_hash_and_length_but_not_the_text(
    client: httpx.AsyncClient, stores: FakeStores
) -> None:
    resp = await client.post(
        "/infer", json={"text": "secret words"}, headers={"x-api-key": "k-123"}
    )
    (row,) = stores.request_log.rows
    assert row.request_id == resp.json()["request_id"]
    assert (row.status_code, row.endpoint, row.worker, row.release) == (200, "/infer", "w7", "r3")
    assert row.input_length == len("secret words")
    assert row.input_text is None
    assert row.input_hash is not None
    assert len(row.input_hash) == 64
    assert row.prediction == resp.json()["prediction"]
    assert row.client_id is not None
    assert len(row.client_id) == 16


def sample(text: str, metric: str, /, **labels: str) -> float | None:
    """The value of the sample of ``metric`` whose labels include ``labels``."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == metric and labels.items() <= s.labels.items():
                return float(s.value)
    return None


async def test_metrics_are_labelled_and_count_requests(client: httpx.AsyncClient) -> None:
    await client.post("/infer", json={"text": "fine"})
    await client.post("/infer", json={"text": ""})
    text = (await client.get("/metrics")).text
    lbl = {"worker": "w7", "release": "r3"}
    assert sample(text, names.REQUESTS, endpoint="/infer", status="200", cache="miss", **lbl) == 1
    assert sample(text, names.REQUESTS, endpoint="/infer", status="422", cache="none", **lbl) == 1
    assert sample(text, names.ERRORS, type="invalid_input", **lbl) == 1
    assert sample(text, names.REQUEST_LOG_LOST, **lbl) == 0
    assert sample(text, names.REQUEST_LOG_WRITTEN, **lbl) == 2
    assert sample(text, names.MODEL_INFO, name="sentiment", version="tiny-1", **lbl) == 1
    assert (sample(text, names.RSS, **lbl) or 0) > 10_000_000
    assert sample(text, names.CACHE_MISSES, **lbl) == 1
    assert sample(text, names.INFLIGHT, **lbl) == 0
    bucket = names.REQUEST_DURATION + "_bucket"
    assert sample(text, bucket, endpoint="/infer", le="0.001", **lbl) is not None
    assert sample(text, bucket, endpoint="/infer", le="10.0", **lbl) == 2
    assert sample(text, names.BATCH_SIZE + "_count", **lbl) == 1


async def test_active_faults_are_announced(tmp_path: Path) -> None:
    faults = FaultInjector({"latency_ms": 0.0})
    app = create_app(
        settings_for(tmp_path), model=tiny_model(), stores=fake_stores(), faults=faults
    )
    async with app.router.lifespan_context(app), await _client(app) as client:
        resp = await client.post("/infer", json={"text": "fine"})
        assert resp.headers["falcon-faults"] == "latency_ms=0"
        text = (await client.get("/metrics")).text
        assert sample(text, names.FAULTS_ACTIVE, fault="latency_ms", profile="dev") == 1


async def test_unknown_route_and_method_get_json_errors(client: httpx.AsyncClient) -> None:
    missing = await client.get("/nope")
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    assert missing.json()["request_id"] == missing.headers["x-request-id"]
    wrong = await client.get("/infer")
    assert (wrong.status_code, wrong.json()["error"]) == (405, "method_not_allowed")


async def test_model_endpoint_shows_metadata(client: httpx.AsyncClient) -> None:
    body = (await client.get("/model")).json()
    assert body["name"] == "sentiment"
    assert body["version"] == "tiny-1"
    assert body["labels"] == ["negative", "neutral", "positive"]


async def test_config_fingerprint_and_docs_are_served(client: httpx.AsyncClient) -> None:
    text = (await client.get("/metrics")).text
    assert sample(text, names.CONFIG_INFO, worker="w7", release="r3", profile="dev") == 1
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


async def test_docs_page_loads_nothing_from_another_host(client: httpx.AsyncClient) -> None:
    """Swagger UI's assets come from the package: /docs works on a machine without internet."""
    page = (await client.get("/docs")).text
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", page, re.IGNORECASE), page
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert len(assets) >= 3  # the script, the stylesheet, the icon
    for url in assets:
        resp = await client.get(url)
        assert resp.status_code == 200, url
        assert len(resp.content) > 100
    assert "/openapi.json" in page
    assert "validatorUrl" in page  # no badge fetched from swagger.io


async def test_public_readiness_shows_no_paths_and_admin_readiness_does(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    public = (await client.get("/readyz")).json()
    for store in public["dependencies"].values():
        assert set(store) == {"backend", "state"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_admin_app(app)), base_url="http://admin"
    ) as admin:
        private = (await admin.get("/readyz")).json()
    assert all("details" in store for store in private["dependencies"].values())


async def test_metrics_can_be_kept_off_the_public_port(tmp_path: Path) -> None:
    app = create_app(settings_for(tmp_path), model=tiny_model(), stores=fake_stores(),
                     public_metrics=False)  # fmt: skip
    async with app.router.lifespan_context(app), await _client(app) as client:
        resp = await client.get("/metrics")
        assert resp.status_code == 404
        assert "control API" in resp.json()["detail"]
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_admin_app(app)), base_url="http://admin"
        ) as admin:
            assert names.REQUESTS in (await admin.get("/metrics")).text


class _GatedModel:
    """The tiny model behind a gate: predict_proba waits until the test opens it."""

    def __init__(self) -> None:
        self._inner = tiny_model()
        self.name, self.version, self.sha256 = "sentiment", "gated-1", "0" * 64
        self.labels, self.metadata = self._inner.labels, {}
        self.gate = threading.Event()
        self.gate.set()  # open for the warm-up
        self.entered = threading.Event()  # set each time predict_proba is called

    def predict_proba(self, texts: Sequence[str]) -> Any:
        self.entered.set()
        self.gate.wait(10)
        return self._inner.predict_proba(texts)


async def _until(condition: Callable[[], bool], what: str, within_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


async def test_full_queue_answers_503_with_retry_after(tmp_path: Path) -> None:
    model = _GatedModel()
    settings = settings_for(
        tmp_path, batch_executor="thread", queue_max=1, batch_max_size=1, batch_max_wait_ms=0
    )
    app = create_app(settings, model=model, stores=fake_stores())
    async with app.router.lifespan_context(app), await _client(app) as client:
        model.gate.clear()
        model.entered.clear()
        batcher = app.state.falcon.batcher
        first = asyncio.create_task(client.post("/infer", json={"text": "in the model"}))
        await _until(model.entered.is_set, "the first request to reach the model")
        second = asyncio.create_task(client.post("/infer", json={"text": "queued"}))
        await _until(lambda: batcher.depth == 1, "the second request to be queued")
        shed = await client.post("/infer", json={"text": "one too many"})
        model.gate.set()
        assert (await first).status_code == 200
        assert (await second).status_code == 200
    assert shed.status_code == 503
    assert shed.json()["error"] == "overloaded"
    assert int(shed.headers["retry-after"]) >= 1


async def test_slow_model_answers_504_not_a_hang(tmp_path: Path) -> None:
    model = _GatedModel()
    settings = settings_for(tmp_path, batch_executor="thread", inference_timeout_ms=200)
    app = create_app(settings, model=model, stores=fake_stores())
    async with app.router.lifespan_context(app), await _client(app) as client:
        model.gate.clear()
        try:
            resp = await asyncio.wait_for(client.post("/infer", json={"text": "stuck"}), 5)
        finally:
            model.gate.set()
    assert resp.status_code == 504
    assert resp.json()["error"] == "inference_timeout"


async def test_in_flight_requests_are_counted_while_they_are_served(
    client: httpx.AsyncClient, stores: FakeStores
) -> None:
    entered, release = asyncio.Event(), asyncio.Event()
    original = stores.cache.get

    async def slow_get(key: str) -> bytes | None:
        entered.set()
        await release.wait()
        return await original(key)

    stores.cache.get = slow_get  # type: ignore[method-assign]
    request = asyncio.create_task(client.post("/infer", json={"text": "held in the cache"}))
    await asyncio.wait_for(entered.wait(), 5)
    during = (await client.get("/metrics")).text
    release.set()
    assert (await request).status_code == 200
    after = (await client.get("/metrics")).text
    assert sample(during, names.INFLIGHT, worker="w7") == 1
    assert sample(after, names.INFLIGHT, worker="w7") == 0


def _samples(text: str, name: str) -> dict[str, float]:
    """{status or "": value} of one metric family's samples in an exposition."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                key = s.labels.get("status", "")
                out[key] = out.get(key, 0.0) + s.value
    return out


async def test_synthetic_requests_on_the_admin_socket_are_counted_apart_from_user_traffic(
    app: FastAPI, client: httpx.AsyncClient, stores: FakeStores
) -> None:
    """A canary's synthetic request (only the supervisor reaches the admin socket) is served
    like /infer but counted in falcon_synthetic_*, never in falcon_requests_total nor in the
    request log: SLOs, alerts and incidents see users only."""
    service = app.state.falcon_service
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_admin_app(app, service)), base_url="http://a"
    ) as admin:
        answers = [await admin.post("/synthetic/infer", json={"text": f"fine {i}"})
                   for i in range(3)]  # fmt: skip
        bad = await admin.post("/synthetic/infer", json={"nope": 1})
        wrong_method = await admin.get("/synthetic/infer")
        exposition = (await admin.get("/metrics")).text
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert answers[0].json()["release"] == "r3"
    assert bad.status_code == 422
    assert wrong_method.status_code == 405
    assert stores.request_log.rows == []
    assert _samples(exposition, names.SYNTHETIC_REQUESTS) == {"200": 3.0, "422": 1.0}
    assert sum(_samples(exposition, names.REQUESTS).values()) == 0
    assert _samples(exposition, names.SYNTHETIC_DURATION + "_count") == {"": 4.0}
    # the public port has no such route, and without a service the admin app has none either
    assert (await client.post("/synthetic/infer", json={"text": "x"})).status_code == 404
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_admin_app(app)), base_url="http://a"
    ) as probes_only:
        assert (await probes_only.post("/synthetic/infer", json={"text": "x"})).status_code in (
            404,
            405,
        )
