"""Pure request validation, v2 tensor parsing/rendering, request ids, error mapping, keys."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import struct
import time
import tracemalloc

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from falcon_platform import errors
from falcon_platform.serving.body import BodyReader, BodyTimeoutError
from falcon_platform.serving.errors import check_client_request_id, error_response, new_request_id
from falcon_platform.serving.inference import client_id
from falcon_platform.serving.predictor import cache_key, decode_row, encode_row, text_hash
from falcon_platform.serving.v2 import V2Request, parse_v2_infer, render_v2_response
from falcon_platform.serving.validation import (
    check_content_length,
    check_content_type,
    parse_batch,
    parse_infer,
)


def test_parse_infer_returns_the_text_untouched() -> None:
    assert parse_infer(b'{"text": "  not bad at all "}', max_chars=100) == "  not bad at all "


def test_text_limit_is_inclusive() -> None:
    assert parse_infer(orjson.dumps({"text": "a" * 10}), max_chars=10) == "a" * 10
    with pytest.raises(errors.InvalidInputError, match="over the 10 limit"):
        parse_infer(orjson.dumps({"text": "a" * 11}), max_chars=10)


@pytest.mark.parametrize(
    ("raw", "error", "words"),
    [
        (b'{"text": 1}', errors.InvalidInputError, "valid string"),
        (b"{}", errors.InvalidInputError, "Field required"),
        (b'{"text": "a", "x": 1}', errors.InvalidInputError, "unknown field"),
        (b'{"text": "a"', errors.MalformedRequestError, "not valid JSON"),
        (b'{"text": "\xff"}', errors.MalformedRequestError, "not valid UTF-8"),
    ],
)
def test_parse_infer_says_what_is_wrong(raw: bytes, error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words):
        parse_infer(raw, max_chars=100)


INFER_BODIES = [
    b'{"text": "ok"}', b'{"text":"caf\xc3\xa9 \\u00e9 \\n \\" \\/ \xe2\x80\xa8"}', b'{"text": ""}',
    b'{"text": " "}', b'{"text": "\\ud800"}', b'{"text": "\\ud83d\\ude00"}', b'{"text": "\xff"}',
    b'{"text": "a\x01b"}', b'{"text": "a", "text": "b"}', b'{"text": "a", "x": 1}', b"{}",
    b'{"text": 1}', b'{"text": null}', b'{"text": ["a"]}', b'["a"]', b'"a"', b"", b" ",
    b'{"text": "a"} x', b'{"text": "a"}\n', b'\xef\xbb\xbf{"text": "a"}', b'{"Text": "a"}',
    b'{"text": "a",}', b"{'text': 'a'}", b'{"text": NaN}', b'{"text": "' + b"a" * 20_000 + b'"}',
]  # fmt: skip


def schema_outcome(raw: bytes) -> object:
    from falcon_platform.serving.validation import schema_text

    try:
        return schema_text(raw)
    except errors.FalconError as exc:
        return (type(exc), exc.detail)


@pytest.mark.parametrize("raw", INFER_BODIES, ids=range(len(INFER_BODIES)))
def test_the_quick_infer_reading_accepts_only_what_the_schema_accepts_alike(raw: bytes) -> None:
    """orjson reads the common body; anything it accepts, the pydantic model must accept
    with the same text (so every answer, error or not, is the schema path's)."""
    from falcon_platform.serving.validation import quick_text

    quick = quick_text(raw)
    assert quick is None or quick == schema_outcome(raw)
    assert (quick is None) == (not isinstance(schema_outcome(raw), str)), "and takes them all"


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=40),
        st.text(max_size=30).map(lambda t: orjson.dumps({"text": t})),
        st.dictionaries(st.sampled_from(["text", "x"]), st.one_of(st.text(max_size=5),
                        st.integers(-(2**63), 2**63 - 1), st.none()), max_size=3).map(orjson.dumps),
        st.text(max_size=30).map(lambda t: b'{"text": "' + t.encode("utf-8", "surrogatepass")
                                 + b'"}'),
    )
)  # fmt: skip
def test_the_quick_infer_reading_agrees_with_the_schema_on_generated_bodies(raw: bytes) -> None:
    from falcon_platform.serving.validation import quick_text

    quick = quick_text(raw)
    assert quick is None or quick == schema_outcome(raw)


def test_milliseconds_is_round_to_three_digits_of_a_latency() -> None:
    """The hot path's cheaper rounding agrees with ``round(seconds * 1000, 3)`` (the earlier
    code) on latencies from 0 to 10 s, drawn with a fixed seed."""
    import random

    from falcon_platform.serving.inference import milliseconds

    rng = random.Random(17)
    latencies = [rng.uniform(0, 0.05) for _ in range(100_000)] + [
        rng.uniform(0, 10) for _ in range(20_000)
    ]
    assert [milliseconds(x) for x in latencies] == [round(x * 1000, 3) for x in latencies]


def test_parse_batch_names_the_bad_item_and_the_limit() -> None:
    with pytest.raises(errors.InvalidInputError, match=r"texts\[1\]"):
        parse_batch(b'{"texts": ["ok", ""]}', max_chars=100, max_items=5)
    with pytest.raises(errors.InvalidInputError, match="over the 2 limit"):
        parse_batch(b'{"texts": ["a", "b", "c"]}', max_chars=100, max_items=2)


@pytest.mark.parametrize(
    "value", ["application/json", "application/json; charset=utf-8", "Application/JSON"]
)
def test_json_content_types_are_accepted(value: str) -> None:
    check_content_type(value)


@pytest.mark.parametrize("value", [None, "text/plain", "application/jsonx", "multipart/form-data"])
def test_other_content_types_are_refused(value: str | None) -> None:
    with pytest.raises(errors.UnsupportedMediaTypeError):
        check_content_type(value)


def test_v2_may_omit_content_type_as_triton_clients_do() -> None:
    check_content_type(None, allow_missing=True)
    check_content_type("application/octet-stream", allow_missing=True)


def test_declared_length_over_limit_is_refused_before_reading() -> None:
    assert check_content_length("1024", 1024) == 1024
    with pytest.raises(errors.PayloadTooLargeError):
        check_content_length("1025", 1024)
    with pytest.raises(errors.MalformedRequestError):
        check_content_length("-1", 1024)


def test_client_request_ids_follow_the_rule_or_are_refused() -> None:
    """X-Request-ID: 1-128 of [A-Za-z0-9._:-], starting alphanumeric; anything else is a 400."""
    for good in ("01HZX-abc.def:1", "a", "a" * 128, "7f9c_x"):
        assert check_client_request_id(good) == good
    for bad in ("", "a" * 129, "has space", "-leading-dash", "ü", "a\tb"):
        with pytest.raises(errors.MalformedRequestError, match="1 to 128 characters"):
            check_client_request_id(bad)


def test_server_request_ids_are_unique_time_ordered_and_not_a_counter() -> None:
    """32 hex: 12 of epoch milliseconds, then 80 random bits; no shared prefix to predict."""
    before = int(time.time() * 1000)
    ids = [new_request_id() for _ in range(5000)]
    after = int(time.time() * 1000)
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert all(before <= int(i[:12], 16) <= after for i in ids)
    randoms = [i[12:] for i in ids]
    # A counter (the old ids) keeps most digits fixed between neighbours; random ones do not.
    shared = [
        next((k for k, (x, y) in enumerate(zip(a, b, strict=True)) if x != y), len(a))
        for a, b in itertools.pairwise(randoms)
    ]
    assert max(shared) < 8  # P(8+ equal leading hex digits) ~ 5000 / 16**8
    for position in range(20):  # every digit takes (almost) every value
        assert len({r[position] for r in randoms}) == 16


def test_a_forked_child_never_repeats_its_parents_ids() -> None:
    new_request_id()  # the parent has a buffer of random bytes
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        os.write(write, "".join(new_request_id() for _ in range(10)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 4096).decode()
    os.close(read)
    parent = [new_request_id() for _ in range(10)]
    child_ids = [child[i : i + 32] for i in range(0, len(child), 32)]
    assert len(child_ids) == 10
    assert not {c[12:] for c in child_ids} & {p[12:] for p in parent}


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (errors.InvalidInputError("x"), 422),
        (errors.MalformedRequestError("x"), 400),
        (errors.NotFoundError("x"), 404),
        (errors.PayloadTooLargeError("x"), 413),
        (errors.UnsupportedMediaTypeError("x"), 415),
        (errors.IdempotencyConflictError("x"), 422),
        (errors.OverloadedError("x", retry_after_s=3), 503),
        (errors.InferenceTimeoutError("x"), 504),
        (errors.ModelError("x"), 503),
        (errors.DependencyError("x"), 503),
        (errors.FalconError("x"), 500),
    ],
)
def test_every_falcon_error_maps_to_its_status_and_code(
    exc: errors.FalconError, status: int
) -> None:
    resp = error_response(exc, "rid")
    assert resp.status == status
    assert orjson.loads(resp.body) == {"error": exc.code, "detail": "x", "request_id": "rid"}
    retry = dict(resp.headers).get(b"retry-after")
    assert retry == (b"3" if isinstance(exc, errors.OverloadedError) else None)


def test_cache_key_depends_on_model_version_and_text() -> None:
    h = text_hash("same text")
    assert cache_key("v1", h) != cache_key("v2", h)
    assert cache_key("v1", h) == cache_key("v1", text_hash("same text"))
    assert cache_key("v1", h) != cache_key("v1", text_hash("same text "))


def test_client_id_prefers_the_credential_and_hides_it() -> None:
    by_key = client_id(b"secret-key", ("10.0.0.1", 5555))
    assert by_key == client_id(b"secret-key", ("10.0.0.2", 1))
    assert "secret" not in by_key
    assert len(by_key) == 16
    assert client_id(None, ("10.0.0.1", 1)) == client_id(None, ("10.0.0.1", 2))
    assert client_id(None, ("10.0.0.1", 1)) != client_id(None, ("10.0.0.2", 1))


def test_v2_binary_bytes_tensor_is_decoded() -> None:
    texts = [b"one", "tw\u00f6".encode()]
    blob = b"".join(struct.pack("<I", len(t)) + t for t in texts)
    head = orjson.dumps({"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": len(blob)}}]})  # fmt: skip
    req = parse_v2_infer(head + blob, str(len(head)), max_chars=10, max_items=4, model_name="m")
    assert req.texts == ["one", "tw\u00f6"]


def test_v2_truncated_binary_is_malformed() -> None:
    blob = struct.pack("<I", 10) + b"abc"
    head = orjson.dumps({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": len(blob)}}]})  # fmt: skip
    with pytest.raises(errors.MalformedRequestError, match="runs past the end"):
        parse_v2_infer(head + blob, str(len(head)), max_chars=10, max_items=4, model_name="m")


def test_v2_render_json_and_selected_outputs() -> None:
    req = V2Request(["a", "b"], "id-1", ("probabilities",), frozenset())
    body, header_len = render_v2_response(
        model_name="m", model_version="1", request=req, labels=("neg", "pos"),
        rows=[[0.25, 0.75], [0.5, 0.5]],
    )  # fmt: skip
    assert header_len is None
    out = orjson.loads(body)
    assert out["id"] == "id-1"
    assert out["outputs"] == [
        {"name": "probabilities", "datatype": "FP32", "shape": [2, 2],
         "data": [0.25, 0.75, 0.5, 0.5]}
    ]  # fmt: skip


@pytest.mark.parametrize(
    "texts",
    [["good"], ["caf\u00e9 \U0001f600 \"q\""], [" "], [""], ["a" * 11], ["a" * 10], ["\u2028"],
     [1], [None], ["a", "b"]],
)  # fmt: skip
def test_v2_one_text_shortcut_agrees_with_the_full_parser(texts: list[object]) -> None:
    """A one-text body takes a short path; with a (zero-byte) binary section the same body
    goes through the pydantic models: same texts, or the same error and message."""
    raw = orjson.dumps(
        {"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]}
    )
    outcomes = []
    for header_length in (None, str(len(raw))):
        try:
            req = parse_v2_infer(raw, header_length, max_chars=10, max_items=4, model_name="m")
            outcomes.append((req.texts, req.id, req.outputs, req.binary))
        except errors.FalconError as exc:
            outcomes.append((type(exc), str(exc)))
    assert outcomes[0] == outcomes[1]


@pytest.mark.parametrize("request_id", [None, "id-1", 'q"uo\\te \u00e9\u2028 \x01'])
@pytest.mark.parametrize(
    ("name", "version"), [("sentiment", "sentiment-6995960c"), ('m"1\u00e9', "v\\2")]
)
def test_v2_render_both_outputs_is_the_json_of_the_response_dict(
    request_id: str | None, name: str, version: str
) -> None:
    """The common response (both outputs, JSON) is byte for byte orjson's encoding of the
    response as a dict, for odd ids and names too: v2's answer bytes, pinned."""
    labels = ("negative", "neutral", "positive")
    rows = [[0.1, 0.2, 0.7], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.49999999999999994, 5e-324]]
    for n in (1, 3):
        req = V2Request(["t"] * n, request_id, ("label", "probabilities"), frozenset())
        body, header_len = render_v2_response(
            model_name=name, model_version=version, request=req, labels=labels, rows=rows[:n]
        )
        expected: dict[str, object] = {"model_name": name, "model_version": version}
        if request_id is not None:
            expected["id"] = request_id
        expected["outputs"] = [
            {"name": "label", "datatype": "BYTES", "shape": [n],
             "data": [labels[r.index(max(r))] for r in rows[:n]]},
            {"name": "probabilities", "datatype": "FP32", "shape": [n, 3],
             "data": [p for r in rows[:n] for p in r]},
        ]  # fmt: skip
        assert header_len is None
        assert body == orjson.dumps(expected)


async def test_body_reader_answers_408_when_the_body_stalls() -> None:
    """A client that stops mid-body gets a 408, not a task held forever."""

    async def stalled() -> dict[str, object]:
        await asyncio.sleep(3600)
        return {}

    reader = BodyReader(limit=1024, timeout_s=0.2)
    reader.start()
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(BodyTimeoutError) as info:
            await reader.read(stalled)
        assert 0.2 <= loop.time() - started < 2
        assert info.value.http_status == 408
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
    finally:
        await reader.stop()


async def test_body_reader_joins_chunks_and_cuts_at_the_limit() -> None:
    chunks = iter([b'{"te', b'xt": "', b'ok"}'])

    async def receive() -> dict[str, object]:
        chunk = next(chunks)
        return {"type": "http.request", "body": chunk, "more_body": chunk != b'ok"}'}

    reader = BodyReader(limit=1024, timeout_s=5)
    reader.start()
    try:
        assert await reader.read(receive) == b'{"text": "ok"}'
        chunks = iter([b"a" * 600, b"a" * 600, b""])
        with pytest.raises(errors.PayloadTooLargeError):
            await reader.read(receive)
    finally:
        await reader.stop()


def test_cached_rows_are_exact_size_and_round_trip() -> None:
    """Cache values are packed float64s: exact, and 8 bytes per label (no 4 KiB JSON blocks)."""
    row = [0.1, 0.2, 0.7000000000000001]
    packed = encode_row(row)
    assert len(packed) == 24
    assert decode_row(packed) == row
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [encode_row([i / 3, 0.5, 0.25]) for i in range(1000)]
        per_value = (tracemalloc.get_traced_memory()[0] - before) / len(kept)
    finally:
        tracemalloc.stop()
    assert per_value < 200


def _v2(shape: object, data: object, **extra: object) -> dict[str, object]:
    return {"name": "text", "datatype": "BYTES", "shape": shape, "data": data, **extra}


V2_OK = [  # bodies the shortcut takes
    {"inputs": [_v2([1], ["good"])]},
    {"id": "r1", "inputs": [_v2([2, 1], [["a"], ["b"]])]},
    {"inputs": [_v2([2], ["a", "b"])], "id": "x"},
    {"id": "k", "model_name": "m", "inputs": [_v2([1], ["a"])]},  # KServe's client
    {"model_name": "m", "model_version": "2", "inputs": [_v2([1], ["a"])]},
]
V2_SCHEMA_OK = [  # valid, but left to the schema: coercion, chosen outputs
    {"inputs": [_v2([1.0], ["coerced"])]},
    {"inputs": [_v2([1], ["a"])], "outputs": [{"name": "label"}]},
]
V2_BAD = [
    {"inputs": [_v2([2], ["a"])]},
    {"inputs": [_v2([1], ["   "])]},
    {"inputs": [_v2([1], [7])]},
    {"inputs": [_v2([1], ["x" * 11])]},
    {"inputs": [_v2([5], ["a", "b", "c", "d", "e"])]},
    {"inputs": [_v2([0], [])]},
    {"inputs": [_v2([1, 2], ["a", "b"])]},
    {"inputs": [{"name": "text", "datatype": "FP32", "shape": [1], "data": [1.0]}]},
    {"inputs": [_v2([1], ["a"], extra=1)]},
    {"inputs": [], "id": "r"},
    {"inputs": [_v2([1], ["a"])], "id": 5},
    {"inputs": [_v2([1], ["a"]), _v2([1], ["b"])]},
    {"model_name": "other", "inputs": [_v2([1], ["a"])]},
    {"model_name": 5, "inputs": [_v2([1], ["a"])]},
    {"inputs": [{**_v2([1], ["a"]), "name": "sentence"}]},
    [],
]
V2_VALID = [orjson.dumps(b) for b in V2_OK + V2_SCHEMA_OK]
V2_BODIES = [
    *V2_VALID,
    *(orjson.dumps(b) for b in V2_BAD),
    b'{"inputs": [{"name"',
    b"\xff",
    b'{"id": "a", "id": "b", "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", '
    b'"data": ["a"]}]}',
]


@pytest.mark.parametrize("raw", V2_BODIES, ids=range(len(V2_BODIES)))
def test_v2_quick_reading_and_the_schema_reading_agree(raw: bytes) -> None:
    """The plain-JSON shortcut must answer exactly what the pydantic path answers."""

    def outcome(header_length: str | None) -> object:
        try:
            return parse_v2_infer(raw, header_length, max_chars=10, max_items=4, model_name="m")
        except errors.FalconError as exc:
            return (type(exc), exc.detail)

    # A binary header as long as the body (no binary data) always takes the pydantic path.
    quick = outcome(None)
    assert quick == outcome(str(len(raw)))
    assert isinstance(quick, V2Request) == (raw in V2_VALID)


async def test_body_timeouts_fire_at_their_deadline_not_at_the_next_tick() -> None:
    """Reads that start at different moments each get 408 at start + timeout (a fixed sweeper
    tick answered up to a tick late: 30 s became ~31 s, more under load)."""
    reader = BodyReader(limit=1024, timeout_s=2.0)
    reader.start()
    stalled = asyncio.Event()

    async def receive() -> dict[str, object]:
        await stalled.wait()  # the client never sends the rest
        return {"type": "http.request", "body": b"", "more_body": False}

    async def timed(delay: float) -> float:
        await asyncio.sleep(delay)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(BodyTimeoutError):
            await reader.read(receive)
        return loop.time() - started

    try:
        waits = await asyncio.gather(*(timed(d) for d in (0.0, 0.15, 0.3, 0.45)))
    finally:
        await reader.stop()
    assert all(2.0 <= w < 2.12 for w in waits), waits
