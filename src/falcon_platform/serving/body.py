"""Reading a request body from ASGI ``receive``: a byte limit, refused early, and a timeout.

The declared Content-Length is checked before anything is read; the bytes are
counted as they stream in, so a chunked upload over the limit is refused at the
chunk that crosses it, without buffering the rest. A client that stops sending
mid-body gets 408 after ``timeout_s`` instead of holding a task forever (uvicorn
has no body-read timeout). The timeout is enforced by one sweeper task that sleeps until the
oldest read's deadline and cancels overdue reads — a timer per request would cost more than
the read::

    reader = BodyReader(limit=1_048_576, timeout_s=30)
    reader.start()                  # in the lifespan; reader.stop() at shutdown
    body = await reader.read(receive)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools

from starlette.types import Receive

from falcon_platform.errors import ClientError, PayloadTooLargeError
from falcon_platform.serving.validation import too_large_detail

IDLE_TICK_S = 1.0


class ClientDisconnectedError(Exception):
    """The client went away before sending the whole body; there is no one to answer."""


class BodyTimeoutError(ClientError):
    """The client stopped sending its body (408); the connection is closed after the answer."""

    code = "request_timeout"
    http_status = 408


class BodyReader:
    def __init__(self, *, limit: int, timeout_s: float) -> None:
        self.limit = limit
        self.timeout_s = timeout_s
        self._reading: dict[int, tuple[asyncio.Task[object], float]] = {}
        self._expired: set[int] = set()
        self._ids = itertools.count()
        self._sweeper: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        # The loop, kept: asyncio.current_task() and get_running_loop() without it each make a
        # getpid system call (CPython checks the loop belongs to this process), twice a request.
        self._loop = asyncio.get_running_loop()
        self._sweeper = self._loop.create_task(self._sweep(), name="falcon-body-timeouts")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    async def read(self, receive: Receive) -> bytes:
        """The whole body, or 413 as soon as it passes the limit, or 408 after the timeout."""
        loop = self._loop
        task = asyncio.current_task(loop) if loop is not None else None
        if task is None or loop is None:  # not started (no loop task): no timeout
            return await read_limited(receive, self.limit)
        key = next(self._ids)
        self._reading[key] = (task, loop.time() + self.timeout_s)
        try:
            return await read_limited(receive, self.limit)
        except asyncio.CancelledError:
            if key not in self._expired:
                raise
            self._expired.discard(key)
            task.uncancel()
            raise BodyTimeoutError(
                f"the request body did not arrive within {self.timeout_s:g} s "
                "(FALCON_BODY_TIMEOUT_S); send the whole body promptly"
            ) from None
        finally:
            self._reading.pop(key, None)

    async def _sweep(self) -> None:
        """Sleep until the oldest read's deadline (every read has the same timeout, so the
        dict's insertion order is deadline order), cancel what is due, repeat; with nothing
        being read, look again after ``IDLE_TICK_S``. A fixed tick made 30 s answer at up to
        31 s, later under load; this answers at the deadline."""
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            wake = now + min(IDLE_TICK_S, self.timeout_s)
            for key, (task, deadline) in list(self._reading.items()):
                if deadline > now:
                    wake = deadline
                    break
                if key not in self._expired:
                    self._expired.add(key)
                    task.cancel()
            await asyncio.sleep(max(0.0, wake - loop.time()))


async def read_limited(receive: Receive, limit: int) -> bytes:
    """All body chunks joined, or ``PayloadTooLargeError`` as soon as they pass ``limit``."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientDisconnectedError
    body: bytes = message.get("body", b"")
    if len(body) > limit:
        raise PayloadTooLargeError(too_large_detail(limit))
    if not message.get("more_body", False):
        return body  # the common case: one chunk, no copy
    chunks = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnectedError
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(too_large_detail(limit))
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
