"""Request validation as pure functions over bytes: one set of rules for every path.

Both the FastAPI routes and the raw-ASGI fast path call these, so a bad input
gets the same status and the same ``detail`` whichever path served it::

    >>> parse_infer(b'{"text": "not bad at all"}', max_chars=10_000)
    'not bad at all'
    >>> parse_infer(b'{"text": "  "}', max_chars=10_000)
    Traceback (most recent call last):
    ...
    falcon_platform.errors.InvalidInputError: 'text' is blank: send at least one non-space character
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
from pydantic import ValidationError

from falcon_platform.errors import (
    InvalidInputError,
    MalformedRequestError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)
from falcon_platform.serving.schemas import BatchRequest, InferRequest

_IDEMPOTENCY_KEY_RE = re.compile(r"[\x21-\x7e]{1,200}")


def check_content_type(value: str | None, *, allow_missing: bool = False) -> None:
    """Accept ``application/json`` (UTF-8: no charset, or charset=utf-8); missing only where a
    protocol omits it.

    >>> check_content_type("application/json; charset=latin-1")
    Traceback (most recent call last):
    ...
    falcon_platform.errors.UnsupportedMediaTypeError: Content-Type 'application/json; charset=latin-1' names charset 'latin-1': JSON bodies must be UTF-8; send the body as UTF-8 with 'Content-Type: application/json'
    """
    if value == "application/json":  # what nearly every client sends: nothing to take apart
        return
    if value is None:
        if allow_missing:
            return
        raise UnsupportedMediaTypeError(
            "missing Content-Type: send the body as JSON with 'Content-Type: application/json'"
        )
    media, _, params = value.partition(";")
    media = media.strip().lower()
    if media != "application/json" and not (allow_missing and media == "application/octet-stream"):
        raise UnsupportedMediaTypeError(
            f"Content-Type {value[:100]!r} is not supported: send the body as JSON with "
            "'Content-Type: application/json'"
        )
    if params and (charset := _charset(params)) is not None and charset not in _UTF8:
        raise UnsupportedMediaTypeError(
            f"Content-Type {value[:100]!r} names charset {charset[:40]!r}: JSON bodies must be "
            "UTF-8; send the body as UTF-8 with 'Content-Type: application/json'"
        )


_UTF8 = frozenset({"utf-8", "utf8"})


def _charset(params: str) -> str | None:
    """The ``charset`` parameter of a media type's parameters (lower case, unquoted)."""
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return None


def check_content_length(value: str | None, limit: int) -> int | None:
    """Refuse a declared body over ``limit`` before reading any of it."""
    if value is None:
        return None
    if not value.isdigit():
        raise MalformedRequestError(f"Content-Length {value[:40]!r} is not a number")
    length = int(value)
    if length > limit:
        raise PayloadTooLargeError(too_large_detail(limit))
    return length


def too_large_detail(limit: int) -> str:
    return (
        f"the request body is over the {limit:,}-byte limit (FALCON_MAX_BODY_BYTES); "
        "send fewer or shorter texts"
    )


def check_idempotency_key(value: str) -> str:
    if not _IDEMPOTENCY_KEY_RE.fullmatch(value):
        raise MalformedRequestError(
            "Idempotency-Key must be 1 to 200 visible ASCII characters (a UUID is a good key)"
        )
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")


def json_invalid_detail(raw: bytes, message: str) -> str:
    """Why a body is not JSON, in words: the parser's message, or the true reason when it is
    a lone surrogate escape such as ``"\\ud800"`` (valid JSON syntax, not a character; the
    parser calls it "unexpected end of hex escape"). Only runs for a body already refused."""
    try:
        value = json.loads(raw)  # the standard library accepts lone surrogates: find them
    except ValueError:
        value = None
    if value is not None:
        lone = _SURROGATE.search(json.dumps(value, ensure_ascii=False))
        if lone is not None:
            return (
                f"the body is not valid JSON text: a string holds the escape \\u{ord(lone.group()):04x}, "
                "half of a UTF-16 surrogate pair, which is not a character on its own; send the "
                "character itself (as UTF-8) or the complete pair"
            )
    return f"the body is not valid JSON ({message}): send a JSON object"


class _DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise _DuplicateKeyError(key)
        seen.add(key)
    return dict(pairs)


def refuse_duplicate_keys(raw: bytes, expected_quotes: int | None) -> None:
    """400 if any JSON object in ``raw`` (already parsed, last key winning) repeats a key: a
    proxy that keeps the first value and Falcon would read different inputs.

    ``expected_quotes`` is ``2 x`` the strings (keys and values) of the parsed result. Every
    string token of the raw text starts and ends with a raw ``"``, so a repeated key adds at
    least two: when the count matches, there is none, and the slow exact check (~7 us, a
    Python hook per object) runs only for bodies with escaped quotes or repeated keys.
    """
    if expected_quotes is not None and raw.count(b'"') == expected_quotes:
        return
    try:
        json.loads(raw, object_pairs_hook=_no_duplicates)
    except _DuplicateKeyError as exc:
        raise MalformedRequestError(
            f"the JSON body has the key {exc.key[:80]!r} twice in one object; send each key once"
        ) from None
    except ValueError:
        return  # not JSON at all: the parser that ran first has said so


def _json_error(raw: bytes, exc: ValidationError) -> MalformedRequestError | None:
    for err in exc.errors(include_url=False):
        if err["type"] == "json_invalid":
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as decode_error:
                return MalformedRequestError(
                    f"the body is not valid UTF-8 (bad byte at offset {decode_error.start}): "
                    "encode the JSON as UTF-8"
                )
            return MalformedRequestError(json_invalid_detail(raw, err["msg"]))
    return None


def _describe(exc: ValidationError, example: str) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field (not allowed)"
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts[:5]) + f"; expected a JSON object like {example}"


def check_text(text: str, *, max_chars: int, field: str = "text") -> None:
    if len(text) > max_chars:
        raise InvalidInputError(
            f"'{field}' is {len(text):,} characters, over the {max_chars:,} limit "
            "(FALCON_MAX_TEXT_CHARS): shorten it or split it"
        )
    if not text.strip():
        raise InvalidInputError(f"'{field}' is blank: send at least one non-space character")


def parse_infer(raw: bytes, *, max_chars: int) -> str:
    """Body of ``POST /infer`` → the text, or a 400/422 saying what is wrong."""
    text = quick_text(raw)
    if text is None:
        text = schema_text(raw)
    if raw.count(b'"') != 4:  # {"text": "..."}: two strings (see refuse_duplicate_keys)
        refuse_duplicate_keys(raw, None)
    check_text(text, max_chars=max_chars)
    return text


def quick_text(raw: bytes) -> str | None:
    """The text of a body the schema accepts as it stands, ``{"text": "<not empty>"}``, read
    with orjson; ``None`` for any other body, which :func:`schema_text` then reads or refuses
    with its message. ~3k instructions against ~10k for the pydantic model (callgrind): both
    parsers read standard JSON alike, and a test checks that whatever this accepts the model
    accepts with the same text."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(data) is dict and len(data) == 1:
        text = data.get("text")
        if type(text) is str and text:
            return text
    return None


def schema_text(raw: bytes) -> str:
    """The text as ``InferRequest`` reads it, or the error that says what is wrong."""
    try:
        return InferRequest.model_validate_json(raw).text
    except ValidationError as exc:
        raise _json_error(raw, exc) or InvalidInputError(
            _describe(exc, '{"text": "..."}')
        ) from None


def parse_batch(raw: bytes, *, max_chars: int, max_items: int) -> list[str]:
    """Body of ``POST /infer/batch`` → the texts, in order."""
    try:
        texts = BatchRequest.model_validate_json(raw).texts
    except ValidationError as exc:
        raise _json_error(raw, exc) or InvalidInputError(
            _describe(exc, '{"texts": ["...", "..."]}')
        ) from None
    refuse_duplicate_keys(raw, 2 + 2 * len(texts))  # the key and each text
    if len(texts) > max_items:
        raise InvalidInputError(
            f"'texts' has {len(texts)} items, over the {max_items} limit "
            "(FALCON_MAX_BATCH_ITEMS): split the batch"
        )
    for index, text in enumerate(texts):
        check_text(text, max_chars=max_chars, field=f"texts[{index}]")
    return texts


def describe_validation_error(exc: ValidationError) -> str:
    """A one-line summary of a pydantic error for v2 bodies."""
    return _describe(exc, '{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", ...}]}')


def decode_utf8(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedRequestError(
            f"bytes at offset {exc.start} are not valid UTF-8: encode texts as UTF-8"
        ) from None
