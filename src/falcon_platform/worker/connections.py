"""The public port's connections: header limits, timeouts and a cap, on uvicorn's httptools path.

uvicorn's ``HttpToolsProtocol`` arms a keep-alive timer only after a response, has no header
timeout, no limit on header size or count (httptools concatenates a header value in memory
however long it is) and no cap on open connections: idle and half-sent connections stayed
open until a worker ran out of descriptors. uvicorn accepts a protocol *class* as
``Config(http=...)`` and calls it per connection; :meth:`ConnectionGuard.protocol_class`
returns a subclass that adds, per connection:

- **Header bytes**: bytes are counted *before* the parser sees them; past
  ``max_header_bytes`` the request is answered 431 without buffering the rest.
- **Header count**: past ``max_header_count`` headers, 431.
- **Header timeout**: a connection must deliver a complete request head within
  ``header_timeout_s`` of connecting (or of the first byte of a later request); a partial head
  is answered 408, a connection that sent nothing is closed.
- **Keep-alive timeout**: ``keepalive_timeout_s`` idle between requests, then closed.
- **Connection age**: a connection older than ``max_connection_age_s`` answers its next
  request with ``Connection: close`` (gRPC's MAX_CONNECTION_AGE): without it a busy
  kept-alive client stays on the workers it first reached and a canary or a replacement never
  gets its share.
- **Drain** (``ConnectionGuard.drain``): once the listener is closed, every response carries
  ``Connection: close``, so a kept-alive client learns from the answer itself not to reuse the
  connection; the server closes only connections that stayed idle through the drain window
  (closing an idle connection at any moment races a client that is sending on it).
- **A cap** (``ConnectionTable``): at most ``cap`` connections per worker. A new connection
  beyond it evicts the least recently useful idle one (no request in flight; ordered by the
  last completed response, or connect time), like nginx reusing keep-alive connections when
  it runs short; when every connection has a request in flight, the new one is answered 503
  with ``Retry-After`` and closed. Clients that completed requests recently are kept.

Errors written here are the usual JSON ``{"error", "detail", "request_id"}`` with
``Connection: close``; then the write side is shut and the rest of the request is read and
discarded for up to ``LINGER_S`` so the client reads the answer instead of a reset.

One timer per connection, re-armed lazily: a deadline moves later without touching the timer,
which re-arms itself when it fires early; a busy keep-alive connection costs no timer call per
request (uvicorn's own protocol cancels and re-creates one per request).
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from falcon_platform.config.settings import Settings
from falcon_platform.errors import ConfigError
from falcon_platform.serving.errors import error_body, new_request_id

log = logging.getLogger("falcon.worker.connections")

LINGER_S = 2.0  # after an error answer: read and discard what the client still sends
LINGER_MAX_BYTES = 64 << 20  # ...but no more than this (then close at once)
EVICTION_SCAN = 256  # connections looked at for an idle one before refusing a new one
REFUSED_LINGERING_MAX = 64  # refused connections lingering at once; beyond, closed at once
WARN_EVERY_S = 60.0  # at most one "cap reached" warning per minute

# Connection phases (ints: compared on every chunk).
HEAD = 0  # waiting for / reading a request head: the header deadline applies
BUSY = 1  # a request in flight: the app's body and inference timeouts apply
IDLE = 2  # between requests: the keep-alive deadline applies
LINGER = 3  # answered with an error, discarding input until the client closes or time is up

# Reasons a connection was closed by Falcon (the label of falcon_connections_closed_total).
REASONS = (
    "evicted",
    "refused",
    "header_timeout",
    "idle_timeout",
    "headers_too_large",
    "bad_request",
)


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout_s: float = 10.0
    keepalive_timeout_s: float = 5.0
    max_connection_age_s: float = 30.0
    max_header_bytes: int = 65_536
    max_header_count: int = 100
    cap: int = 4096


def connection_cap(max_connections: int, nofile_limit: int, fds_in_use: int, reserve: int) -> int:
    """Connections one worker may hold: its setting, bounded so that ``reserve`` descriptors
    stay free for the admin socket, request-log segments, database and Redis connections.

    >>> connection_cap(4096, 20_000, 40, 128)
    4096
    >>> connection_cap(4096, 1024, 40, 128)
    856
    """
    return max(0, min(max_connections, nofile_limit - fds_in_use - reserve))


def connection_limits(settings: Settings) -> ConnectionLimits:
    """The limits from settings, the cap bounded by this process's descriptor limit.

    Raises the soft ``RLIMIT_NOFILE`` toward the hard one first (the usual soft default,
    1024, would leave fewer than 900 connections). A limit too low to leave any connection
    after the reserve is a boot failure that says what to raise.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    in_use = _descriptors_in_use()
    wanted = settings.max_connections + settings.fd_reserve + in_use
    if soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    cap = connection_cap(settings.max_connections, soft, in_use, settings.fd_reserve)
    if cap < 1:
        raise ConfigError(
            f"the descriptor limit (RLIMIT_NOFILE {soft}) leaves no connection after "
            f"{in_use} descriptors in use and FALCON_FD_RESERVE={settings.fd_reserve}: raise "
            "the limit (ulimit -n, systemd LimitNOFILE) or lower FALCON_FD_RESERVE"
        )
    if cap < settings.max_connections:
        log.warning(
            "connection cap %d, below FALCON_MAX_CONNECTIONS=%d: RLIMIT_NOFILE %d less %d in use "
            "less FALCON_FD_RESERVE=%d; raise the descriptor limit to allow more",
            cap, settings.max_connections, soft, in_use, settings.fd_reserve,
        )  # fmt: skip
    return ConnectionLimits(
        header_timeout_s=settings.header_timeout_s,
        keepalive_timeout_s=settings.keepalive_timeout_s,
        max_connection_age_s=settings.max_connection_age_s,
        max_header_bytes=settings.max_header_bytes,
        max_header_count=settings.max_header_count,
        cap=cap,
    )


def _descriptors_in_use() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


class _TooManyHeaders(Exception):
    """Raised from the parser's header callback; httptools re-raises it wrapped."""


@dataclass
class ConnectionStats:
    """Plain numbers for the metrics collector (read at scrape time)."""

    open: Callable[[], int]
    closed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))


class ConnectionTable:
    """The open connections of one server, least recently useful first, and the cap."""

    def __init__(self, cap: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.cap = cap
        self._open: OrderedDict[GuardedProtocol, None] = OrderedDict()
        self.stats = ConnectionStats(open=lambda: len(self._open))
        self._clock = clock
        self._warned_at = -WARN_EVERY_S
        self._evicted_since_warning = 0
        self.refused_lingering = 0  # refused connections still open (not in the table)
        self.draining = False  # every response closes its connection

    def __len__(self) -> int:
        return len(self._open)

    def admit(self, conn: GuardedProtocol) -> bool:
        """Make room for ``conn`` (evicting an idle one if the cap is reached); False: refuse."""
        if len(self._open) >= self.cap:
            victim = self._evictable()
            if victim is None:
                self._count("refused")
                return False
            self._open.pop(victim, None)
            victim.evict()
            self._count("evicted")
        self._open[conn] = None
        return True

    def touch(self, conn: GuardedProtocol) -> None:
        """``conn`` completed a request: it moves to the back of the eviction order."""
        if conn in self._open:
            self._open.move_to_end(conn)

    def remove(self, conn: GuardedProtocol) -> None:
        self._open.pop(conn, None)

    def closed(self, reason: str) -> None:
        self.stats.closed[reason] += 1

    def _evictable(self) -> GuardedProtocol | None:
        for scanned, conn in enumerate(self._open):
            if scanned >= EVICTION_SCAN:
                break
            if conn.evictable():
                return conn
        return None

    def _count(self, reason: str) -> None:
        self.stats.closed[reason] += 1
        self._evicted_since_warning += 1
        now = self._clock()
        if now - self._warned_at >= WARN_EVERY_S:
            log.warning(
                "connection cap reached (%d open, FALCON_MAX_CONNECTIONS / descriptor reserve): "
                "%d connections evicted or refused since the last warning "
                "(falcon_connections_closed_total); see RUNBOOK 'Connection flood'",
                len(self._open),
                self._evicted_since_warning,
            )
            self._warned_at = now
            self._evicted_since_warning = 0


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with Falcon's limits; built by :class:`ConnectionGuard`."""

    limits: ConnectionLimits
    table: ConnectionTable

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase = HEAD
        self._deadline = 0.0
        self._timer_at = 0.0
        self._head_bytes = 0
        self._head_done = False
        self._discarded = 0
        self._refused = False
        self._born = 0.0

    # --- connection lifecycle -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._born = self.loop.time()
        if not self.table.admit(self):
            if self.table.refused_lingering >= REFUSED_LINGERING_MAX:
                transport.close()  # a flood of refusals must not hold descriptors itself
                return
            self._refused = True
            self.table.refused_lingering += 1
            self._answer_and_close(
                503,
                "too_many_connections",
                "this worker is at its connection limit with a request in flight on every "
                "connection; retry after the Retry-After delay",
                retry_after=True,
            )
            return
        self._arm(self.loop.time() + self.limits.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self.table.remove(self)
        if self._refused:
            self._refused = False
            self.table.refused_lingering -= 1
        timer = self.timeout_keep_alive_task
        if timer is not None:
            timer.cancel()
            self.timeout_keep_alive_task = None
        super().connection_lost(exc)

    def evictable(self) -> bool:
        """No request in flight: waiting for one, reading a head, or lingering."""
        return self._phase != BUSY and not self.pipeline

    def evict(self) -> None:
        self._phase = LINGER
        self.transport.close()

    def shutdown(self) -> None:
        if self._phase == LINGER:
            self.transport.close()
            return
        super().shutdown()

    # --- bytes in ------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        phase = self._phase
        if phase == LINGER:
            self._discarded += len(data)
            if self._discarded > LINGER_MAX_BYTES:
                self.transport.close()
            return
        if phase == IDLE:  # the first bytes of the next request: its head has a deadline
            self._phase = HEAD
            self._arm(self.loop.time() + self.limits.header_timeout_s)
        if self._head_done:
            self._feed(data)
            return
        room = self.limits.max_header_bytes - self._head_bytes
        if len(data) <= room:
            self._head_bytes += len(data)
            self._feed(data)
            return
        # The head may end inside the budget with a body after it: feed up to the budget and
        # look. (A pipelined head that starts inside a body chunk is counted from the next
        # chunk on: it can exceed the limit by at most one read, never grow without bound.)
        self._head_bytes = self.limits.max_header_bytes
        if room > 0 and not self._feed(data[:room]):
            return
        if self._head_done:
            self._feed(data[room:])
        else:
            self._headers_too_large(f"over {self.limits.max_header_bytes:,} bytes")

    def _feed(self, data: bytes) -> bool:
        """Parse ``data``; False when the connection was answered with an error."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _TooManyHeaders):
                self._headers_too_large(f"more than {self.limits.max_header_count} header fields")
            else:
                self._bad_request()
            return False
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError:
            self._bad_request()
            return False
        return True

    # --- parser callbacks -----------------------------------------------------------------------
    def on_headers_complete(self) -> None:
        # Counted here, not per header: the byte limit already bounds what was buffered, and an
        # override of on_header cost a Python call per header on every request.
        if len(self.headers) > self.limits.max_header_count:
            raise _TooManyHeaders
        self._head_done = True
        self._phase = BUSY
        super().on_headers_complete()
        if self.cycle is not None and (self.table.draining or self._too_old()):
            self.cycle.keep_alive = False  # uvicorn adds `Connection: close` and closes after

    def _too_old(self) -> bool:
        age = self.limits.max_connection_age_s
        return age > 0 and self.loop.time() - self._born > age

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._head_done = False  # the next bytes are the next request's head
        self._head_bytes = 0

    def on_response_complete(self) -> None:
        # uvicorn's, with our deadline instead of a fresh keep-alive timer per response.
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        self.table.touch(self)
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        self._phase = HEAD if self._head_bytes else IDLE
        timeout = (
            self.limits.header_timeout_s if self._head_bytes else self.limits.keepalive_timeout_s
        )
        self._arm(self.loop.time() + timeout)

    # --- deadlines ------------------------------------------------------------------------------
    def _arm(self, deadline: float) -> None:
        """Make the current phase end by ``deadline``; a later deadline keeps the timer."""
        self._deadline = deadline
        timer = self.timeout_keep_alive_task
        if timer is not None:
            if self._timer_at <= deadline:
                return  # it fires first and re-arms itself for the rest
            timer.cancel()
        self._timer_at = deadline
        self.timeout_keep_alive_task = self.loop.call_at(deadline, self._on_deadline)

    def _on_deadline(self) -> None:
        self.timeout_keep_alive_task = None
        if self.transport.is_closing() or self._phase == BUSY:
            return
        if self.loop.time() < self._deadline:
            self._arm(self._deadline)
            return
        if self._phase == LINGER:
            self.transport.close()
        elif self._phase == HEAD and self._head_bytes:
            self.table.closed("header_timeout")
            self._answer_and_close(
                408,
                "request_timeout",
                f"the request head (line and headers) did not arrive within "
                f"{self.limits.header_timeout_s:g} s (FALCON_HEADER_TIMEOUT_S); send it at once",
            )
        else:  # nothing sent since connecting, or idle between requests
            self.table.closed("idle_timeout")
            self.transport.close()

    # --- answers --------------------------------------------------------------------------------
    def _headers_too_large(self, what: str) -> None:
        self.table.closed("headers_too_large")
        self._answer_and_close(
            431,
            "headers_too_large",
            f"the request head is {what}: the limits are {self.limits.max_header_bytes:,} bytes "
            f"(FALCON_MAX_HEADER_BYTES) and {self.limits.max_header_count} header fields "
            "(FALCON_MAX_HEADER_COUNT); send fewer or shorter headers",
        )

    def _bad_request(self) -> None:
        self.table.closed("bad_request")
        self._answer_and_close(
            400, "malformed_request", "the request is not valid HTTP/1.1; check the request line"
        )

    def _answer_and_close(
        self, status: int, code: str, detail: str, *, retry_after: bool = False
    ) -> None:
        """A JSON error with ``Connection: close``, then linger (see the module docstring)."""
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()  # a response is being written: nothing can be added safely
            return
        body = error_body(code, detail, new_request_id())
        head = [
            STATUS_LINE[status],
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n",
        ]
        if retry_after:
            head.append(b"retry-after: 1\r\n")
        self.transport.write(b"".join([*head, b"\r\n", body]))
        self._phase = LINGER
        self.flow.resume_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._arm(self.loop.time() + LINGER_S)


class ConnectionGuard:
    """One public server's limits and connection table; hands uvicorn the protocol class.

    ::

        guard = ConnectionGuard(ConnectionLimits(cap=4096))
        uvicorn.Config(app, http=guard.protocol_class(), ...)
        guard.stats.open(), guard.stats.closed["evicted"]
    """

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.table = ConnectionTable(limits.cap)
        self.stats = self.table.stats

    async def drain(self, *, window_s: float, settle_s: float) -> None:
        """Call once the listener is closed: from now on every response closes its connection;
        return when no connection is left or ``window_s`` has passed (at least ``settle_s``,
        for connections accepted a moment ago), leaving uvicorn's shutdown to close the idle
        rest and finish the busy ones."""
        self.table.draining = True
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.sleep(settle_s)
        # polled: the table has no change notification, and this runs once per worker life
        while len(self.table) and loop.time() - start < window_s:  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    def protocol_class(self) -> type[GuardedProtocol]:
        return type(
            "FalconHttpProtocol",
            (GuardedProtocol,),
            {"limits": self.limits, "table": self.table},
        )
