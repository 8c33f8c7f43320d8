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

import re

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
    """Accept ``application/json`` (any parameters); missing only where a protocol omits it."""
    if value is None:
        if allow_missing:
            return
        raise UnsupportedMediaTypeError(
            "missing Content-Type: send the body as JSON with 'Content-Type: application/json'"
        )
    media = value.split(";", 1)[0].strip().lower()
    if media != "application/json" and not (allow_missing and media == "application/octet-stream"):
        raise UnsupportedMediaTypeError(
            f"Content-Type {value[:100]!r} is not supported: send the body as JSON with "
            "'Content-Type: application/json'"
        )


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
            return MalformedRequestError(
                f"the body is not valid JSON ({err['msg']}): send a JSON object"
            )
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
    try:
        text = InferRequest.model_validate_json(raw).text
    except ValidationError as exc:
        raise _json_error(raw, exc) or InvalidInputError(
            _describe(exc, '{"text": "..."}')
        ) from None
    check_text(text, max_chars=max_chars)
    return text


def parse_batch(raw: bytes, *, max_chars: int, max_items: int) -> list[str]:
    """Body of ``POST /infer/batch`` → the texts, in order."""
    try:
        texts = BatchRequest.model_validate_json(raw).texts
    except ValidationError as exc:
        raise _json_error(raw, exc) or InvalidInputError(
            _describe(exc, '{"texts": ["...", "..."]}')
        ) from None
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
