"""The supervisor's own answer while no worker is ready: a fast 503, counted and logged.

The supervisor holds the public socket (every worker inherits it). While
``unready.decide_unready`` says so, it accepts on that socket too and answers every request
with ``503`` + ``Retry-After`` and Falcon's JSON error body, instead of leaving clients in the
kernel's backlog until they time out. Requests on the inference routes are counted in the
same families and labels the workers export (``falcon_requests_total``,
``falcon_request_duration_seconds``, ``worker="supervisor"``), so the SLIs, the error-rate and
burn-rate alerts and incident impact see them, and get a request-log row (spooled and shipped
like a worker's, under ``<spool>/supervisor``)::

    responder = UnavailableResponder(sock, settings, clock=clock)
    await responder.start()
    responder.engage(release="r1", retry_after_s=10, why="workers are restarting")
    responder.disengage()       # a worker is ready: the kernel gives it the connections again
    await responder.close()

Work per connection is bounded so this can run on the supervisor's event loop: the request
head is parsed with h11 (at most 16 KiB, within 2 s), the body is never parsed (what arrives
is read and dropped for at most 2 s after the answer, so the kernel does not reset a client
still sending it), and at most 512 connections are open at once (more are closed at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import secrets
import socket
import ssl
import time
from typing import Any

import h11
import orjson
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from falcon_platform.clock import Clock
from falcon_platform.config.settings import Settings
from falcon_platform.config.spec import LATENCY_BUCKETS
from falcon_platform.errors import OverloadedError
from falcon_platform.observability import names
from falcon_platform.observability.sli_store import extract_sli_points
from falcon_platform.stores.base import RequestLogRecord
from falcon_platform.stores.request_log import SpoolingRequestLog

log = logging.getLogger("falcon.supervisor")

WORKER_ID = "supervisor"  # the worker label and request-log worker of these answers
ERROR_CODE = "no_ready_worker"
MAX_HEAD_BYTES = 16 * 1024
HEAD_TIMEOUT_S = 2.0
LINGER_S = 2.0
LINGER_MAX_BYTES = 4 * 1_048_576
MAX_CONNECTIONS = 512
SUMMARY_EVERY_S = 10.0
# The same buckets and endpoint names as the workers (serving.metrics), so the families merge.
ENDPOINTS = ("/infer", "/infer/batch", "/v2/infer")
_V2_INFER = re.compile(r"^/v2/models/[^/]+(?:/versions/[^/]+)?/infer$")
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")


def endpoint_of(target: str) -> str | None:
    """The worker's ``endpoint`` label for a request target, or None (not an inference route).

    >>> endpoint_of("/v2/models/sentiment/versions/3/infer?x=1"), endpoint_of("/readyz")
    ('/v2/infer', None)
    """
    path = target.split("?", 1)[0]
    if path in ("/infer", "/infer/batch"):
        return path
    if _V2_INFER.match(path):
        return "/v2/infer"
    return None


class _Metrics:
    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # as the workers (process-wide)
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ["worker", "release", "endpoint", "status", "cache"]
        self.requests = Counter(
            names.REQUESTS,
            "Requests by endpoint, HTTP status and cache.",
            labels,
            registry=self.registry,
        )
        self.duration = Histogram(
            names.REQUEST_DURATION,
            "Request latency (seconds).",
            ["worker", "release", "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def prepare(self, release: str) -> None:
        """Export the release's series at 0 before the first 503: ``rate()`` and ``increase()``
        (both evaluators) cannot see a series whose first sample is already 1."""
        for endpoint in ENDPOINTS:
            self.requests.labels(WORKER_ID, release, endpoint, "503", "none")
            self.duration.labels(WORKER_ID, release, endpoint)

    def observe(self, release: str, endpoint: str, seconds: float) -> None:
        self.requests.labels(WORKER_ID, release, endpoint, "503", "none").inc()
        self.duration.labels(WORKER_ID, release, endpoint).observe(seconds)


class UnavailableResponder:
    def __init__(
        self,
        sock: socket.socket,
        settings: Settings,
        *,
        clock: Clock,
        request_log: SpoolingRequestLog | None = None,
    ) -> None:
        self._sock = sock
        self._settings = settings
        self._clock = clock
        self._log = request_log
        self.metrics = _Metrics()
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self.release = settings.release
        self.retry_after_s = 1
        self.why = ""
        self.answered = 0  # since engaged
        self.answered_total = 0
        self._last_summary = 0.0
        self._summarised = 0

    # --- control (from the supervisor loop) ----------------------------------------------------
    @property
    def engaged(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        """Start the request-log shipper (its own thread)."""
        if self._log is not None:
            await self._log.start()

    def prepare(self, release: str) -> None:
        self.metrics.prepare(release)

    async def engage(self, *, release: str, retry_after_s: int, why: str) -> bool:
        """Answer on the public socket from now on; True when this call switched it on."""
        self.release, self.retry_after_s, self.why = release, retry_after_s, why
        self.metrics.prepare(release)
        if self._server is not None:
            return False
        # A duplicate descriptor of the same listening socket: closing it stops our accepting
        # without closing the socket the workers listen on.
        listener = self._sock.dup()
        try:
            self._server = await asyncio.get_running_loop().create_server(
                self._new_connection,
                sock=listener,
                backlog=2048,  # asyncio calls listen() again: keep the supervisor's backlog
                ssl=self._tls(),
                ssl_handshake_timeout=HEAD_TIMEOUT_S if self._settings.tls_certfile else None,
            )
        except (OSError, ssl.SSLError) as exc:
            listener.close()
            log.error("cannot answer on the public socket while no worker is ready: %s", exc)
            return False
        self.answered = 0
        return True

    def disengage(self) -> int:
        """Stop accepting (a worker is ready again); returns how many were answered."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        return self.answered

    async def close(self) -> None:
        self.disengage()
        for conn in list(self._connections):
            conn.abort()
        if self._log is not None:
            await self._log.close()

    def sli_points(self) -> list[tuple[str, dict[str, str], float, str]]:
        """This responder's request families as SLI points (like a worker's scrape)."""
        text = generate_latest(self.metrics.registry).decode()
        return extract_sli_points(text, worker=WORKER_ID, release=self.release)

    # --- connections ---------------------------------------------------------------------------
    def _tls(self) -> ssl.SSLContext | None:
        s = self._settings
        if s.tls_certfile is None or s.tls_keyfile is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(s.tls_certfile), str(s.tls_keyfile))
        return context

    def _new_connection(self) -> _Connection:
        return _Connection(self)

    def register(self, conn: _Connection) -> bool:
        if len(self._connections) >= MAX_CONNECTIONS:
            return False
        self._connections.add(conn)
        return True

    def forget(self, conn: _Connection) -> None:
        self._connections.discard(conn)

    def body(self, request_id: str) -> bytes:
        detail = (
            f"no worker of this service is ready ({self.why}); retry after {self.retry_after_s} s"
        )
        return orjson.dumps({"error": ERROR_CODE, "detail": detail, "request_id": request_id})

    def record(
        self, *, endpoint: str | None, request_id: str, arrived: float, seconds: float, peer: Any
    ) -> None:
        """Count and log one answered request (inference routes only, as the workers do)."""
        self.answered += 1
        self.answered_total += 1
        if endpoint is not None:
            self.metrics.observe(self.release, endpoint, seconds)
            if self._log is not None:
                host = peer[0] if isinstance(peer, tuple) and peer else "-"
                row = RequestLogRecord(
                    request_id=request_id,
                    ts=arrived,
                    worker=WORKER_ID,
                    release=self.release,
                    model_version="",
                    endpoint=endpoint,
                    status_code=503,
                    latency_ms=round(seconds * 1000, 3),
                    client_id=hashlib.sha256(str(host).encode()).hexdigest()[:16],
                    error_type=ERROR_CODE,
                )
                try:
                    self._log.append(row)
                except OverloadedError:
                    pass  # the disk budget is spent; the answer is a 503 either way
                except Exception as exc:
                    log.warning("request-log append for a 503 failed: %s", exc)
        now = time.monotonic()
        if now - self._last_summary >= SUMMARY_EVERY_S:
            log.warning(
                "no worker ready (%s): answered %d request(s) with 503",
                self.why,
                self.answered_total - self._summarised,
            )
            self._last_summary, self._summarised = now, self.answered_total


class _Connection(asyncio.Protocol):
    """One client: read the request head, answer 503, drain what else it sends, close."""

    def __init__(self, owner: UnavailableResponder) -> None:
        self.owner = owner
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.answered = False
        self.lingered = 0
        self.started = time.perf_counter()
        self.arrived = time.time()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if not self.owner.register(self):
            transport.abort()
            return
        self.timer = asyncio.get_running_loop().call_later(HEAD_TIMEOUT_S, self.abort)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.owner.forget(self)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.answered:
            self.lingered += len(data)
            if self.lingered > LINGER_MAX_BYTES:
                self.abort()
            return
        self.h11.receive_data(data)
        try:
            event = self.h11.next_event()
        except h11.RemoteProtocolError:
            self._answer(None, malformed=True)
            return
        if isinstance(event, h11.Request):
            self._answer(event)

    def eof_received(self) -> bool | None:
        if not self.answered:
            self.abort()
        return None

    def _answer(self, request: h11.Request | None, *, malformed: bool = False) -> None:
        assert self.transport is not None
        self.answered = True
        owner = self.owner
        request_id = secrets.token_hex(16)
        sent_id = None
        endpoint = None
        method = b"GET"
        if request is not None:
            method = request.method
            endpoint = endpoint_of(request.target.decode("latin-1"))
            for name, value in request.headers:
                if name == b"x-request-id":
                    text = value.decode("latin-1")
                    sent_id = text if _REQUEST_ID.fullmatch(text) else None
        if malformed:
            status = 400
            body = orjson.dumps(
                {
                    "error": "malformed_request",
                    "detail": "the request is not valid HTTP/1.1",
                    "request_id": request_id,
                }
            )
            headers = []
        else:
            status = 503
            body = owner.body(request_id)
            headers = [(b"retry-after", str(owner.retry_after_s).encode())]
        headers += [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", (sent_id or request_id).encode()),
            (b"connection", b"close"),
        ]
        self.transport.write(_serialise(status, headers, body, head_only=method == b"HEAD"))
        if not malformed:
            owner.record(
                endpoint=endpoint,
                request_id=request_id,
                arrived=self.arrived,
                seconds=time.perf_counter() - self.started,
                peer=self.transport.get_extra_info("peername"),
            )
        # Half-close and read what the client still sends for a moment: closing with unread
        # data makes the kernel send a reset, which can destroy the answer before it is read.
        if self.timer is not None:
            self.timer.cancel()
        if self.transport.can_write_eof():
            with contextlib.suppress(OSError, RuntimeError):
                self.transport.write_eof()
        self.timer = asyncio.get_running_loop().call_later(LINGER_S, self._close)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()


_REASONS = {400: b"Bad Request", 503: b"Service Unavailable"}


def _serialise(
    status: int, headers: list[tuple[bytes, bytes]], body: bytes, *, head_only: bool
) -> bytes:
    """The response bytes. Written by hand: a fixed status line and headers we chose (h11 would
    need a parsed request to answer, and a malformed one has none)."""
    lines = [b"HTTP/1.1 %d %s" % (status, _REASONS[status])]
    lines += [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + (b"" if head_only else body)
