"""The one place a ``FalconError`` becomes an HTTP response, and request ids.

Both the FastAPI routes and the raw-ASGI fast path call :func:`error_response`,
so an error body is identical whichever path served the request::

    >>> resp = error_response(InvalidInputError("'text' is empty"), "req-1")
    >>> resp.status, orjson.loads(resp.body)["error"]
    (422, 'invalid_input')
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field

import orjson

from falcon_platform.errors import FalconError, MalformedRequestError, OverloadedError

# Where the fast path leaves the request id for FastAPI's handlers (one id per request).
REQUEST_ID_KEY = "falcon.request_id"

# What a client may send as X-Request-ID (uuid, hex, ULID, "abc-123.x:y"); anything else is a 400.
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")
REQUEST_ID_RULE = (
    "X-Request-ID must be 1 to 128 characters of A-Z a-z 0-9 . _ : - starting with a letter "
    "or digit (a UUID is a good id), sent once"
)


@dataclass(slots=True)
class RawResponse:
    """A response both ASGI paths can send: status, extra headers, JSON body bytes."""

    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    content_type: bytes = b"application/json"


_RANDOM_HEX = 20  # 80 random bits per id
_REFILL = 256  # ids per os.urandom call


class _RequestIds:
    """The server's id of a request (the request-log key): 32 hex characters, unguessable.

    12 hex of milliseconds since the epoch, then 80 bits from the kernel's CSPRNG: time
    first so the log's primary-key index grows at its end instead of splitting pages at
    random (as UUIDv7 does). The random bytes are read 256 ids at a time (one
    ``os.urandom`` call, instead of a syscall per request) and the buffer is dropped in a
    forked child, so a child never repeats its parent's ids.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._hex = ""
        self._pos = 0
        self._ms = -1
        self._prefix = ""

    def __call__(self) -> str:
        pos = self._pos
        if pos >= len(self._hex):
            self._hex = os.urandom(_RANDOM_HEX * _REFILL // 2).hex()
            pos = 0
        self._pos = pos + _RANDOM_HEX
        ms = time.time_ns() // 1_000_000
        if ms != self._ms:  # formatted once per millisecond, not per request (-0.25 us)
            self._ms = ms
            self._prefix = f"{ms & 0xFFFFFFFFFFFF:012x}"
        return self._prefix + self._hex[pos : pos + _RANDOM_HEX]


new_request_id = _RequestIds()
os.register_at_fork(after_in_child=new_request_id.reset)


def check_client_request_id(sent: str | None) -> str | None:
    """The client's ``X-Request-ID`` if it follows the rule; ``MalformedRequestError`` if not.

    >>> check_client_request_id("abc-123")
    'abc-123'
    >>> check_client_request_id(None) is None
    True
    """
    if sent is None or _REQUEST_ID_RE.fullmatch(sent):
        return sent
    raise MalformedRequestError(f"{REQUEST_ID_RULE}; got {sent[:40]!r}")


def client_request_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The ``X-Request-ID`` header of an ASGI scope, checked (two different values: 400)."""
    sent: str | None = None
    for name, value in headers:
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if sent is not None and text != sent:
                raise MalformedRequestError(f"{REQUEST_ID_RULE}; got two different values")
            sent = text
    return check_client_request_id(sent)


def error_body(code: str, detail: str, request_id: str) -> bytes:
    return orjson.dumps({"error": code, "detail": detail, "request_id": request_id})


def error_response(exc: FalconError, request_id: str) -> RawResponse:
    """Map any FalconError to its status, JSON body and headers (Retry-After when shedding)."""
    headers: list[tuple[bytes, bytes]] = []
    if isinstance(exc, OverloadedError):
        headers.append((b"retry-after", str(exc.retry_after_s).encode()))
    return RawResponse(exc.http_status, error_body(exc.code, exc.detail, request_id), headers)


HTTP_STATUS_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "too_many_requests",
}


def http_error_code(status: int) -> str:
    """The ``error`` code for a framework-level HTTP error (unknown route, wrong method)."""
    return HTTP_STATUS_CODES.get(status, "http_error" if status < 500 else "internal_error")
