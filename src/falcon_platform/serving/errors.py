"""The one place a ``FalconError`` becomes an HTTP response, and request ids.

Both the FastAPI routes and the raw-ASGI fast path call :func:`error_response`,
so an error body is identical whichever path served the request::

    >>> resp = error_response(InvalidInputError("'text' is empty"), "req-1")
    >>> resp.status, orjson.loads(resp.body)["error"]
    (422, 'invalid_input')
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass, field

import orjson

from falcon_platform.errors import FalconError, OverloadedError

# Where the fast path leaves the request id for FastAPI's handlers (one id per request).
REQUEST_ID_KEY = "falcon.request_id"

# Accept what proxies and tracing systems send (uuid, hex, ULID, "abc-123.x:y"); refuse the rest.
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")


@dataclass(slots=True)
class RawResponse:
    """A response both ASGI paths can send: status, extra headers, JSON body bytes."""

    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    content_type: bytes = b"application/json"


class _RequestIds:
    """32 hex chars: a random 64-bit prefix per process + a counter.

    Unique across workers and restarts (the request-log primary key relies on it) at a
    fraction of the cost of ``os.urandom`` per request (a syscall each); the prefix is
    redrawn in a forked child so parent and child never share it.
    """

    def __init__(self) -> None:
        self._prefix = ""
        self._counter = itertools.count()

    def reset(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count()

    def __call__(self) -> str:
        if not self._prefix:
            self.reset()
        return f"{self._prefix}{next(self._counter) & 0xFFFFFFFFFFFFFFFF:016x}"


new_request_id = _RequestIds()
os.register_at_fork(after_in_child=new_request_id.reset)


def resolve_request_id(sent: str | None) -> str:
    """Honour a valid ``X-Request-ID``; otherwise generate one.

    >>> resolve_request_id("abc-123")
    'abc-123'
    >>> len(resolve_request_id("bad id with spaces"))
    32
    """
    if sent and _REQUEST_ID_RE.fullmatch(sent):
        return sent
    return new_request_id()


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
