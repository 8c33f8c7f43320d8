"""Structured logs: one JSON object per line (default) or a console line for humans.

Stdlib ``logging`` with a small orjson formatter rather than structlog: the
access line is on the hot path and this is the cheapest correct option.
Nothing is configured at import; entry points call :func:`configure_logging`::

    configure_logging(level="INFO", fmt="json")
    logging.getLogger("falcon.access").info("request", extra={"fields": {"status": 200}})
    # {"ts":"2026-11-26T21:00:00.123Z","level":"info","logger":"falcon.access","msg":"request","status":200}
"""

from __future__ import annotations

import collections
import logging
import sys
import threading
import time
from datetime import UTC, datetime
from typing import IO, Any

import orjson

_HANDLER_NAME = "falcon"


# (epoch second, its ISO text), formatted once per second. One tuple replaced in one
# assignment, so a thread never reads a new second with the previous second's text.
_second: tuple[int, str] = (-1, "")
# ".000Z" .. ".999Z": a lookup instead of formatting the milliseconds per line (the
# ``:03d`` format was ~1 us of the ~1.4 us a stamp cost, on every access line).
_MILLIS = tuple(f".{ms:03d}Z" for ms in range(1000))


def _timestamp(created: float) -> str:
    """``2026-11-26T21:00:00.123Z``; the date part is cached per second (hot path)."""
    global _second
    second = int(created)
    cached = _second
    if cached[0] != second:
        cached = (second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
        _second = cached
    return cached[1] + _MILLIS[int((created - second) * 1000)]


class JsonFormatter(logging.Formatter):
    """``record.fields`` (passed as ``extra={"fields": {...}}``) are merged into the object."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            payload.update(fields)
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(payload, default=str).decode()


class ConsoleFormatter(logging.Formatter):
    """``21:00:00.123 INFO  falcon.access request status=200 latency_ms=3.1``."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = _timestamp(record.created)[11:23]
        line = f"{stamp} {record.levelname:<5} {record.name} {record.getMessage()}"
        fields = getattr(record, "fields", None)
        if fields:
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class BufferedLineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes lines in bursts: every ``interval_s``, at 256 lines, or at once for WARNING+.

    One ``write`` per line (what ``StreamHandler`` does) costs a syscall per request at
    thousands of requests/s; this keeps INFO lines at most ``interval_s`` late. Written by
    hand because the stdlib ``MemoryHandler`` still writes its target once per record.
    """

    def __init__(self, stream: IO[str], interval_s: float = 0.25) -> None:
        super().__init__(stream)
        # Appended to by any thread without a lock; only ``flush`` (under the handler's
        # lock) takes lines out, one ``popleft`` each, so a line appended while a flush is
        # writing stays queued for the next one. (Swapping in a new list instead lost the
        # line of a thread that had read the old list's attribute just before the swap.)
        self._lines: collections.deque[str] = collections.deque()
        self._stop = threading.Event()
        self._interval_s = interval_s
        self._flusher: threading.Thread | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.append_line(self.format(record), urgent=record.levelno >= logging.WARNING)
        except Exception:
            self.handleError(record)

    def append_line(self, line: str, *, urgent: bool = False) -> None:
        """Queue one formatted line (``deque.append`` is atomic: no lock on the hot path)."""
        self._lines.append(line)
        if self._flusher is None:
            self._flusher = threading.Thread(
                target=self._flush_periodically, name="falcon-log-flush", daemon=True
            )
            self._flusher.start()
        if urgent or len(self._lines) >= 256:
            self.flush()

    def flush(self) -> None:
        self.acquire()
        try:
            queued, take = self._lines, self._lines.popleft
            lines = [take() for _ in range(len(queued))]
            if lines and self.stream is not None:
                self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()
        finally:
            self.release()

    def _flush_periodically(self) -> None:
        while not self._stop.wait(self._interval_s):
            if self._lines:
                self.flush()

    def close(self) -> None:
        self._stop.set()
        self.flush()
        super().close()


_ACCESS = logging.getLogger("falcon.access")
# Set by configure_logging: the handler and format the access line goes straight to.
_access_sink: list[tuple[BufferedLineHandler, bool]] = []


def log_access(
    request_id: str,
    client_request_id: str | None,
    worker: str,
    release: str,
    model_version: str,
    endpoint: str,
    status: int,
    latency_ms: float,
    cache: str,
    idempotency_hit: bool,
    error_type: str | None,
) -> None:
    """The per-request access line at INFO on ``falcon.access``, with these fields in order.

    Same line as ``logging.getLogger("falcon.access").info("request", extra={"fields": ...})``
    but without building a LogRecord and taking the handler lock: that path cost ~25 us of a
    ~125 us request (measured with wrk on one core); and the JSON object built once, in one
    literal (a fields dict merged into a second one cost a cache hit ~1 us more). Logger
    filters are not applied; the level is. Before :func:`configure_logging` (tests building
    the app in-process) it falls back to the logging call, so caplog and friends still see it.
    """
    if not _ACCESS.isEnabledFor(logging.INFO):
        return
    if not _access_sink or not _access_sink[0][1]:  # not configured, or console lines
        fields = {
            "request_id": request_id, "client_request_id": client_request_id, "worker": worker,
            "release": release, "model_version": model_version, "endpoint": endpoint,
            "status": status, "latency_ms": latency_ms, "cache": cache,
            "idempotency_hit": idempotency_hit, "error_type": error_type,
        }  # fmt: skip
        if not _access_sink:
            _ACCESS.info("request", extra={"fields": fields})
            return
        pairs = " ".join(f"{k}={v}" for k, v in fields.items())
        stamp = _timestamp(time.time())[11:23]
        _access_sink[0][0].append_line(f"{stamp} INFO  {_ACCESS.name} request {pairs}")
        return
    line = orjson.dumps(
        {
            "ts": _timestamp(time.time()), "level": "info", "logger": "falcon.access",
            "msg": "request", "request_id": request_id, "client_request_id": client_request_id,
            "worker": worker, "release": release, "model_version": model_version,
            "endpoint": endpoint, "status": status, "latency_ms": latency_ms, "cache": cache,
            "idempotency_hit": idempotency_hit, "error_type": error_type,
        },
        default=str,
    )  # fmt: skip
    _access_sink[0][0].append_line(line.decode())


def configure_logging(
    level: str = "INFO", fmt: str = "json", stream: IO[str] | None = None
) -> None:
    """Install one handler on the root logger (idempotent: replaces Falcon's previous one)."""
    # Documented logging optimisations: no caller lookup, thread or process names per record.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == _HANDLER_NAME:
            root.removeHandler(old)
            old.close()
    handler = BufferedLineHandler(stream if stream is not None else sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(ConsoleFormatter() if fmt == "console" else JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    _access_sink[:] = [(handler, fmt != "console")]
    # uvicorn's own access log would duplicate ours (and cost as much again).
    logging.getLogger("uvicorn.access").disabled = True
    # Alembic narrates every plugin and migration context at INFO on each start; keep its
    # warnings, drop the narration (`falcon db current` shows the schema version).
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))
