"""The fast path (``serving.fastpath``) answers exactly what the FastAPI routes answer.

Two real apps in-process (httpx ASGITransport), one with ``FALCON_FAST_PATH=true`` and one
with ``false``, get the same requests in the same order; status, headers, bodies, the
request-log rows and the request counters must agree, apart from what is unique per request
(the server's request id, the processing time). Also: which paths the fast path claims
(``match_v2_infer``), and the request-id rule it applies in front of every other route.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from test_serving_cases import CASES, JSON, V2, settings_for, tiny_model

from falcon_platform.serving.app import create_app
from falcon_platform.serving.fastpath import match_v2_infer
from falcon_platform.testing.stores import FakeStores, fake_stores

SERVER_ID = re.compile(r"[0-9a-f]{32}")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v2/models/sentiment/infer", ("sentiment", None)),
        ("/v2/models/sentiment/versions/3/infer", ("sentiment", "3")),
        ("/v2/models/a.b-c_d/versions/tiny-1/infer", ("a.b-c_d", "tiny-1")),
        ("/v2/models/sentiment/infer/", None),  # trailing slash: FastAPI's redirect, not ours
        ("/v2/models//infer", None),
        ("/v2/models/sentiment/versions//infer", None),
        ("/v2/models/a/b/infer", None),
        ("/v2/models/sentiment/ready", None),
        ("/v2/models/sentiment", None),
        ("/v2/models/sentiment/infer/extra", None),
        ("/x/v2/models/sentiment/infer", None),
        ("", None),
    ],
)
def test_which_paths_are_v2_inference(path: str, expected: tuple[str, str | None] | None) -> None:
    assert match_v2_infer(path) == expected


@dataclass
class Side:
    app: FastAPI
    stores: FakeStores
    client: httpx.AsyncClient


@pytest.fixture
async def sides(tmp_path: Path) -> AsyncIterator[dict[str, Side]]:
    """The fast path and the FastAPI routes, side by side (same worker id, same model)."""
    built = {}
    for name, fast in (("fast", True), ("slow", False)):
        stores = fake_stores()
        settings = settings_for(tmp_path / name, fast_path=fast, worker_id="w7", release="r3")
        built[name] = (create_app(settings, model=tiny_model(), stores=stores), stores)
    fast_app, slow_app = built["fast"][0], built["slow"][0]
    async with (
        fast_app.router.lifespan_context(fast_app),
        slow_app.router.lifespan_context(slow_app),
    ):
        result = {}
        for name, (app, stores) in built.items():
            transport = httpx.ASGITransport(app=app)
            client = httpx.AsyncClient(transport=transport, base_url="http://falcon")
            result[name] = Side(app, stores, client)
        try:
            yield result
        finally:
            for side in result.values():
                await side.client.aclose()


def _scrub(value: Any) -> Any:
    """The answer without what is unique to one request."""
    if isinstance(value, dict):
        return {
            k: "<id>" if k == "request_id" else "<ms>" if k == "processing_time_ms" else _scrub(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def answer(resp: httpx.Response, sent_id: str | None) -> tuple[int, list[tuple[str, str]], Any]:
    """(status, headers, body) normalised; checks the per-request parts on the way."""
    ids = resp.headers.get_list("x-request-id")
    assert len(ids) == 1, resp.headers  # never two X-Request-ID headers
    assert int(resp.headers["content-length"]) == len(resp.content)
    body: Any = resp.content
    if resp.headers.get("content-type") == "application/json" and resp.content:
        body = orjson.loads(resp.content)
        if isinstance(body, dict) and "request_id" in body:
            assert SERVER_ID.fullmatch(body["request_id"])
            if sent_id is None:
                assert ids[0] == body["request_id"]
    if sent_id is not None and resp.status_code < 400:
        assert ids[0] == sent_id  # echoed
    elif sent_id is None:
        assert SERVER_ID.fullmatch(ids[0])
    headers = sorted(
        (k, "<id>" if k == "x-request-id" else v)
        for k, v in resp.headers.multi_items()
        if k != "content-length"
    )
    return resp.status_code, headers, _scrub(body)


def _v2(texts: list[str]) -> bytes:
    tensor = {"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}
    return orjson.dumps({"inputs": [tensor]})


Request = tuple[str, str, bytes, dict[str, str]]

GOOD: list[Request] = [
    ("POST", "/infer", b'{"text": "great product, love it"}', JSON),
    ("POST", "/infer", b'{"text": "great product, love it"}', JSON),  # a cache hit now
    ("POST", "/infer/batch", b'{"texts": ["awful", "the box is blue"]}', JSON),
    ("POST", V2, _v2(["awful", "great"]), JSON),
    ("POST", "/v2/models/sentiment/versions/tiny-1/infer", _v2(["fine"]), JSON),
    ("POST", "/infer", b'{"text": "once"}', {**JSON, "idempotency-key": "k-1"}),
    ("POST", "/infer", b'{"text": "once"}', {**JSON, "idempotency-key": "k-1"}),  # replay
    ("POST", "/infer", b'{"text": "other"}', {**JSON, "idempotency-key": "k-1"}),  # conflict
    ("POST", "/infer", b'{"text": "traced"}', {**JSON, "x-request-id": "abc-123"}),
    # not inference: passed through on both
    ("GET", "/infer", b"", {}),
    ("PUT", "/infer/batch", b"{}", JSON),
    ("POST", "/infer/", b'{"text": "x"}', JSON),
    ("POST", "/v2/models/sentiment/infer/extra", b"{}", JSON),
    ("GET", "/healthz", b"", {}),
    ("GET", "/healthz", b"", {"x-request-id": "trace-7"}),
    ("GET", "/healthz", b"", {"x-request-id": "not ok"}),
    ("GET", "/v2/models/sentiment", b"", {}),
    ("GET", "/nowhere", b"", {}),
]
BAD: list[Request] = [("POST", c.path, c.body, c.headers) for c in CASES]


async def _both(sides: dict[str, Side], requests: list[Request]) -> None:
    for method, path, body, headers in requests:
        sent = headers.get("x-request-id")
        fast, slow = [
            answer(await s.client.request(method, path, content=body, headers=headers), sent)
            for s in (sides["fast"], sides["slow"])
        ]
        assert fast == slow, f"{method} {path} {body[:80]!r}"


async def test_good_requests_and_passed_through_routes_get_the_same_answers(
    sides: dict[str, Side],
) -> None:
    await _both(sides, GOOD)


async def test_every_bad_input_gets_the_same_answer(sides: dict[str, Side]) -> None:
    await _both(sides, BAD)


def _rows(side: Side) -> list[tuple[Any, ...]]:
    return [
        (r.endpoint, r.status_code, r.error_type, r.prediction, r.confidence, r.cache_hit,
         r.idempotency_hit, r.input_hash, r.input_length, r.client_request_id)
        for r in side.stores.request_log.rows
    ]  # fmt: skip


def _counters(side: Side) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, _ = side.app.state.falcon.metrics.render()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
        if s.name
        in {
            "falcon_requests_total",
            "falcon_errors_total",
            "falcon_cache_hits_total",
            "falcon_cache_misses_total",
            "falcon_idempotency_hits_total",
            "falcon_request_duration_seconds_count",
        }
    }


async def test_both_paths_log_and_count_the_same_requests(sides: dict[str, Side]) -> None:
    """The request log and the counters (what alerts and the SLO read) do not depend on
    which path served."""
    await _both(sides, GOOD + BAD)
    fast, slow = sides["fast"], sides["slow"]
    assert _rows(fast) == _rows(slow)
    assert len(_rows(fast)) > len(BAD)  # every inference request has its row
    assert _counters(fast) == _counters(slow)
    requests = {k: v for k, v in _counters(fast).items() if k[0] == "falcon_requests_total"}
    assert sum(requests.values()) == len(_rows(fast))


async def test_a_bad_request_id_is_refused_on_every_route(sides: dict[str, Side]) -> None:
    """The rule is the same in front of FastAPI as on the inference routes: 400, with the
    server's id in the header (the bad one is not echoed)."""
    for side in sides.values():
        for method, path in (("GET", "/healthz"), ("GET", "/nowhere"), ("POST", "/infer")):
            resp = await side.client.request(
                method, path, content=b'{"text": "x"}', headers={**JSON, "x-request-id": "a b"}
            )
            assert resp.status_code == 400, (method, path)
            assert resp.json()["error"] == "malformed_request"
            assert resp.headers["x-request-id"] == resp.json()["request_id"]
            two = await side.client.request(
                method,
                path,
                content=b'{"text": "x"}',
                headers=[("content-type", "application/json"), ("x-request-id", "a"),
                         ("x-request-id", "b")],
            )  # fmt: skip
            assert two.status_code == 400, (method, path)


async def test_the_same_request_id_sent_twice_is_one_id(sides: dict[str, Side]) -> None:
    for side in sides.values():
        resp = await side.client.get(
            "/healthz", headers=[("x-request-id", "same-1"), ("x-request-id", "same-1")]
        )
        assert resp.status_code == 200
        assert resp.headers.get_list("x-request-id") == ["same-1"]
