"""Open Inference Protocol v2 tensors: parse a request's BYTES input, render the outputs.

Pure functions over bytes. Supports the JSON form and the binary-data
extension Triton's clients use by default (a JSON header of
``Inference-Header-Content-Length`` bytes, then raw tensors; a BYTES element is
a 4-byte little-endian length and its bytes)::

    >>> req = parse_v2_infer(b'{"inputs": [{"name": "text", "shape": [2], '
    ...     b'"datatype": "BYTES", "data": ["good", "bad"]}]}', None, max_chars=100, max_items=8,
    ...     model_name="sentiment")
    >>> req.texts
    ['good', 'bad']
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from pydantic import ValidationError

from falcon_platform.errors import InvalidInputError, MalformedRequestError, NotFoundError
from falcon_platform.model.base import ServableModel
from falcon_platform.serving.schemas import V2InferRequest, V2ModelMetadata, V2TensorMetadata
from falcon_platform.serving.validation import (
    check_text,
    decode_utf8,
    describe_validation_error,
    json_invalid_detail,
    refuse_duplicate_keys,
)

INPUT_NAME = "text"
LABEL_OUTPUT = "label"
PROBS_OUTPUT = "probabilities"
OUTPUT_NAMES = (LABEL_OUTPUT, PROBS_OUTPUT)
_LEN = struct.Struct("<I")


@dataclass(slots=True)  # not frozen: one per request, and a frozen __init__ costs 3x
class V2Request:
    texts: list[str]
    id: str | None
    outputs: tuple[str, ...]  # names to return, in order
    binary: frozenset[str]  # names to return as binary data


def model_metadata(name: str, version: str, n_labels: int) -> V2ModelMetadata:
    return V2ModelMetadata(
        name=name,
        versions=[version],
        platform="sklearn",
        inputs=[V2TensorMetadata(name=INPUT_NAME, datatype="BYTES", shape=[-1])],
        outputs=[
            V2TensorMetadata(name=LABEL_OUTPUT, datatype="BYTES", shape=[-1]),
            V2TensorMetadata(name=PROBS_OUTPUT, datatype="FP32", shape=[-1, n_labels]),
        ],
    )


def check_served(model: ServableModel, name: str, version: str | None = None) -> None:
    """404 unless ``name`` (and ``version``, if given) is the model this server serves."""
    if name != model.name or version not in (None, model.version):
        asked = name + (f" version {version}" if version else "")
        raise NotFoundError(
            f"model {asked!r} is not served here; this server serves {model.name!r} version "
            f"{model.version!r} (GET /v2/models/{model.name})"
        )


def _bad(detail: str) -> MalformedRequestError:
    return MalformedRequestError(f"malformed v2 inference request: {detail}")


def _split_binary(raw: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return raw, b""
    if not header_length.isdigit() or int(header_length) > len(raw):
        raise _bad(
            f"Inference-Header-Content-Length {header_length[:20]!r} is not a length "
            f"within the {len(raw)}-byte body"
        )
    n = int(header_length)
    return raw[:n], raw[n:]


def _decode_binary_bytes(blob: bytes) -> list[str]:
    texts: list[str] = []
    offset = 0
    while offset < len(blob):
        if offset + 4 > len(blob):
            raise _bad("truncated BYTES element length in the binary data")
        (size,) = _LEN.unpack_from(blob, offset)
        offset += 4
        if offset + size > len(blob):
            raise _bad("a BYTES element runs past the end of the binary data")
        texts.append(decode_utf8(blob[offset : offset + size]))
        offset += size
    return texts


def _flatten(data: Sequence[Any]) -> list[Any]:
    if data and isinstance(data[0], list) and all(isinstance(x, list) for x in data):
        return [y for x in data for y in x]
    return list(data)


def parse_v2_infer(
    raw: bytes,
    header_length: str | None,
    *,
    max_chars: int,
    max_items: int,
    model_name: str,
    model_version: str | None = None,
) -> V2Request:
    """Body (+ optional binary section) → the texts and which outputs to return how.

    ``model_name``/``model_version`` are the URL's; the body may repeat them (KServe's client
    sends ``model_name``), and must then agree."""
    if header_length is None:
        simple = _simple_request(raw)
        if simple is not None:  # the common form, read without building pydantic models
            body, name, datatype, shape, data = simple
            if (
                len(body) == 1  # only "inputs": no id, no model name or version to check
                and shape == [1]
                and len(data) == 1
                and type(text := data[0]) is str
                and name == INPUT_NAME
                and datatype == "BYTES"
                and max_items >= 1
            ):  # one text, as most clients send: the checks below, short (~1.5 us, profiled)
                refuse_duplicate_keys(raw, 16)  # 8 strings: 5 keys, name, datatype, the text
                if len(text) > max_chars or not text.strip():
                    check_text(text, max_chars=max_chars, field=f"{INPUT_NAME}[0]")
                return V2Request(data, None, OUTPUT_NAMES, _NO_BINARY)
            flat = _flatten(data)
            # keys + string values: inputs, id/model_name/model_version (str), 4 tensor keys,
            # name, datatype, the texts (see refuse_duplicate_keys)
            strings = 2 * len(body) - 1 + 6 + sum(type(t) is str for t in flat)
            refuse_duplicate_keys(raw, 2 * strings)
            _check_model(body.get("model_name"), body.get("model_version"), model_name,
                         model_version)  # fmt: skip
            _check_tensor(name, datatype, shape)
            checked = _checked_texts(name, shape, flat, max_chars, max_items)
            return V2Request(checked, body.get("id"), OUTPUT_NAMES, _NO_BINARY)
    head, binary = _split_binary(raw, header_length)
    try:
        req = V2InferRequest.model_validate_json(head)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            if err["type"] == "json_invalid":
                decode_utf8(head)
                raise _bad(json_invalid_detail(head, err["msg"])) from None
        raise _bad(describe_validation_error(exc)) from None
    refuse_duplicate_keys(head, None)
    _check_model(req.model_name, req.model_version, model_name, model_version)
    if len(req.inputs) != 1:
        raise _bad(f"expected exactly one input tensor ('{INPUT_NAME}'), got {len(req.inputs)}")
    tensor = req.inputs[0]
    _check_tensor(tensor.name, tensor.datatype, tensor.shape)
    size = (tensor.parameters or {}).get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size < 0 or size != len(binary):
            raise _bad(f"binary_data_size {size!r} does not match the {len(binary)} binary bytes")
        elements: list[Any] = _decode_binary_bytes(binary)
    elif tensor.data is None:
        raise _bad(f"input '{tensor.name}' has no 'data' and no binary_data_size")
    else:
        elements = _flatten(tensor.data)
    texts = _checked_texts(tensor.name, tensor.shape, elements, max_chars, max_items)
    return V2Request(texts, req.id, *_outputs(req))


_SIMPLE_TENSOR_KEYS = frozenset({"name", "shape", "datatype", "data"})
_SIMPLE_BODY_KEYS = frozenset({"inputs", "id", "model_name", "model_version"})
_NO_BINARY: frozenset[str] = frozenset()


_Simple = tuple[dict[str, Any], str, str, list[int], list[Any]]


def _simple_request(raw: bytes) -> _Simple | None:
    """``(body, name, datatype, shape, data)`` when the body is exactly ``{"inputs": [<one
    tensor with name, shape, datatype and data>]}`` plus, optionally, string ``id``,
    ``model_name`` and ``model_version``, with the exact JSON types the schema asks for, so
    pydantic would accept it unchanged; None sends anything else (and every error) through the
    pydantic path. Profiled: the models cost more than the rest of a one-text v2 request's
    parsing."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(body) is not dict or "inputs" not in body or not body.keys() <= _SIMPLE_BODY_KEYS:
        return None
    inputs = body["inputs"]
    if type(inputs) is not list:
        return None
    for name in ("id", "model_name", "model_version"):  # a loop: this runs on every v2 request
        if name in body and type(body[name]) is not str:
            return None
    if len(inputs) != 1 or type(tensor := inputs[0]) is not dict:
        return None
    if tensor.keys() != _SIMPLE_TENSOR_KEYS or type(tensor["data"]) is not list:
        return None
    if type(tensor["name"]) is not str or type(tensor["datatype"]) is not str:
        return None
    shape = tensor["shape"]
    if type(shape) is not list:
        return None
    for d in shape:  # a loop, not all(<genexpr>): this runs on every v2 request
        if type(d) is not int:
            return None
    return body, tensor["name"], tensor["datatype"], shape, tensor["data"]


def _check_model(
    sent_name: str | None, sent_version: str | None, url_name: str, url_version: str | None
) -> None:
    """The body's optional ``model_name``/``model_version`` must name the URL's model."""
    if sent_name is not None and sent_name != url_name:
        raise _bad(
            f"model_name {sent_name[:80]!r} in the body does not match {url_name!r} in the URL"
        )
    if sent_version is not None and url_version is not None and sent_version != url_version:
        raise _bad(
            f"model_version {sent_version[:80]!r} in the body does not match {url_version!r} in "
            "the URL"
        )


def _check_tensor(name: str, datatype: str, shape: list[int]) -> None:
    if name != INPUT_NAME:
        raise _bad(
            f"input {name[:80]!r} is not an input of this model; its one input is {INPUT_NAME!r}"
        )
    if datatype != "BYTES":
        raise _bad(f"input '{name}' must have datatype BYTES, not {datatype!r}")
    if not shape or len(shape) > 2 or min(shape) < 0:
        raise _bad(f"input shape {shape} must be [n] or [n, 1]")
    if len(shape) == 2 and shape[1] != 1:
        raise _bad(f"input shape {shape} must be [n] or [n, 1] (one text per row)")


def _checked_texts(
    name: str, shape: list[int], texts: list[Any], max_chars: int, max_items: int
) -> list[str]:
    """The tensor's texts once their count and every element check out."""
    n = shape[0]
    if len(texts) != n:
        raise _bad(f"shape {shape} says {n} texts but the data holds {len(texts)}")
    if n == 0:
        raise _bad("the input holds no texts; send at least one")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise _bad(f"element {i} of '{name}' is {type(text).__name__}, not a string")
    # The tensor is well formed; what follows is about the texts themselves: 422, as /infer.
    if n > max_items:
        raise InvalidInputError(
            f"'{name}' holds {n} texts, over the {max_items} limit (FALCON_MAX_BATCH_ITEMS): "
            "split the request"
        )
    for i, text in enumerate(texts):
        if len(text) > max_chars or not text.strip():  # the field name only when it fails
            check_text(text, max_chars=max_chars, field=f"{name}[{i}]")
    return texts


def _outputs(req: V2InferRequest) -> tuple[tuple[str, ...], frozenset[str]]:
    binary_default = bool((req.parameters or {}).get("binary_data_output", False))
    if not req.outputs:
        return OUTPUT_NAMES, frozenset(OUTPUT_NAMES) if binary_default else frozenset()
    names, binary = [], set()
    for out in req.outputs:
        if out.name not in OUTPUT_NAMES:
            raise _bad(f"unknown output {out.name!r}; this model has {list(OUTPUT_NAMES)}")
        names.append(out.name)
        if bool((out.parameters or {}).get("binary_data", binary_default)):
            binary.add(out.name)
    return tuple(names), frozenset(binary)


def render_v2_response(
    *,
    model_name: str,
    model_version: str,
    request: V2Request,
    labels: Sequence[str],
    rows: Sequence[Sequence[float]],
) -> tuple[bytes, int | None]:
    """The response body and, when any output is binary, the JSON header's length."""
    n, k = len(rows), len(labels)
    predicted = [labels[row.index(max(row))] for row in rows]  # the first maximum, as argmax
    if not request.binary and request.outputs == OUTPUT_NAMES:  # the common answer, direct
        flat = rows[0] if n == 1 else [p for row in rows for p in row]
        body: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
        if request.id is not None:
            body["id"] = request.id
        body["outputs"] = [
            {"name": LABEL_OUTPUT, "datatype": "BYTES", "shape": [n], "data": predicted},
            {"name": PROBS_OUTPUT, "datatype": "FP32", "shape": [n, k], "data": flat},
        ]
        return orjson.dumps(body), None
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name in request.outputs:
        if name == LABEL_OUTPUT:
            out: dict[str, Any] = {"name": name, "datatype": "BYTES", "shape": [n]}
            if name in request.binary:
                blob = b"".join(_LEN.pack(len(b)) + b for b in (p.encode() for p in predicted))
            else:
                out["data"] = predicted
        else:
            out = {"name": name, "datatype": "FP32", "shape": [n, k]}
            if name in request.binary:
                blob = np.asarray(rows, dtype="<f4").tobytes()
            else:
                out["data"] = [p for row in rows for p in row]
        if name in request.binary:
            out["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        outputs.append(out)
    body = {"model_name": model_name, "model_version": model_version}
    if request.id is not None:
        body["id"] = request.id
    body["outputs"] = outputs
    header = orjson.dumps(body)
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)
