"""Request-log segment files: one JSON line per row, appended before the response is sent.

A worker writes ``<spool_dir>/<worker_id>/<time_ns>-<pid>.open`` (held with ``flock`` while
it is live), renames it to ``.seg`` when it rotates (by size or age) and the shipper moves
closed segments into the database in name order. A write is one ``os.write`` of a whole
line (no fsync): it survives the process being SIGKILLed; a torn last line (power loss,
full disk) is ignored when the segment is read, because its request never got a response.

    writer = SegmentWriter(spool / "w0", account, max_bytes=4 << 20, max_age_s=0.2)
    writer.append(encode_record(record))     # OverloadedError when the disk budget is spent
    writer.append(encode_row(request_id, ts, ...))   # the same line, from the fields (serving)
    writer.rotate_if_due(time.monotonic())   # called by the shipper thread
    rows, torn, corrupt = parse_segment(path.read_bytes())
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from falcon_platform.errors import OverloadedError
from falcon_platform.stores.base import RequestLogRecord

logger = logging.getLogger("falcon.stores.request_log")

OPEN_SUFFIX = ".open"
CLOSED_SUFFIX = ".seg"
WARN_FRACTION = 0.8  # loud log when the spool reaches 80% of its budget
REARM_FRACTION = 0.7  # ...and again after it fell below 70%


def encode_record(record: RequestLogRecord) -> bytes:
    """One newline-terminated JSON line, the columns in the dataclass's order."""
    r = record
    return encode_row(
        r.request_id, r.ts, r.worker, r.release, r.model_version, r.endpoint, r.status_code,
        r.latency_ms, r.input_hash, r.input_length, r.input_text, r.prediction, r.confidence,
        r.cache_hit, r.idempotency_hit, r.client_id, r.error_type, r.client_request_id,
    )  # fmt: skip


def encode_row(
    request_id: str,
    ts: float,
    worker: str,
    release: str,
    model_version: str,
    endpoint: str,
    status_code: int,
    latency_ms: float,
    input_hash: str | None,
    input_length: int | None,
    input_text: str | None,
    prediction: str | None,
    confidence: float | None,
    cache_hit: bool,
    idempotency_hit: bool,
    client_id: str | None,
    error_type: str | None,
    client_request_id: str | None,
) -> bytes:
    """:func:`encode_record` from the fields themselves: the serving path builds no
    ``RequestLogRecord`` (keyword construction ~13k instructions) and orjson encodes a dict
    in ~7k against ~18k for a slotted dataclass (callgrind, bench/hit_cost.py's notes)."""
    return orjson.dumps(
        {
            "request_id": request_id, "ts": ts, "worker": worker, "release": release,
            "model_version": model_version, "endpoint": endpoint, "status_code": status_code,
            "latency_ms": latency_ms, "input_hash": input_hash, "input_length": input_length,
            "input_text": input_text, "prediction": prediction, "confidence": confidence,
            "cache_hit": cache_hit, "idempotency_hit": idempotency_hit, "client_id": client_id,
            "error_type": error_type, "client_request_id": client_request_id,
        },
        option=orjson.OPT_APPEND_NEWLINE,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class ParsedSegment:
    rows: list[dict[str, Any]]
    torn_tail: bool  # last line had no newline or did not parse: a write cut short
    corrupt: int  # lines in the middle that did not parse (should be 0; counted as lost)


def parse_segment(data: bytes) -> ParsedSegment:
    """Decode a segment; tolerate a torn last line, count (and skip) corrupt middle lines.

    >>> parse_segment(b'{"request_id":"a"}\\n{"requ').torn_tail
    True
    """
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    torn = bool(tail)
    rows: list[dict[str, Any]] = []
    corrupt = 0
    for i, line in enumerate(lines):
        if not line:
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            if i == len(lines) - 1 and not tail:
                torn = True  # the last complete-looking line was cut and padded: still torn
            else:
                corrupt += 1
            continue
        if isinstance(row, dict) and "request_id" in row:
            rows.append(row)
        else:
            corrupt += 1
    return ParsedSegment(rows, torn, corrupt)


def count_rows(data: bytes) -> int:
    """Rows in a segment without decoding it (complete lines only)."""
    return data.count(b"\n")


def closed_segments(directory: Path) -> list[Path]:
    """Closed segments of one worker, oldest first (names start with a zero-padded time)."""
    try:
        return sorted(p for p in directory.iterdir() if p.name.endswith(CLOSED_SUFFIX))
    except FileNotFoundError:
        return []


def claim_abandoned(directory: Path) -> list[Path]:
    """Close ``.open`` segments no live process holds (its writer was killed); return them.

    A live writer holds ``flock`` on its open segment, so this never steals a live file.
    """
    claimed: list[Path] = []
    try:
        candidates = sorted(p for p in directory.iterdir() if p.name.endswith(OPEN_SUFFIX))
    except FileNotFoundError:
        return claimed
    for path in candidates:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # a live writer holds it
        try:
            target = path.with_suffix(CLOSED_SUFFIX)
            path.rename(target)
            claimed.append(target)
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)
    return claimed


@dataclass
class SpoolAccount:
    """Rows and bytes on disk for one worker's spool; shared by the writer and the shipper."""

    budget_bytes: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    disk_bytes: int = 0
    rows_pending: int = 0
    rows_written: int = 0
    rows_spilled: int = 0
    rows_lost: int = 0
    segments: dict[str, tuple[int, int]] = field(default_factory=dict)  # closed name -> rows, bytes
    spilled: set[str] = field(default_factory=set)  # segments already counted as spilled
    warned: bool = False

    def add_closed(self, name: str, rows: int, size: int, *, counted: bool) -> None:
        """Register a closed segment; ``counted`` when its rows/bytes were already added."""
        with self.lock:
            if name in self.segments:
                return
            self.segments[name] = (rows, size)
            if not counted:
                self.rows_pending += rows
                self.disk_bytes += size

    def remove_closed(self, name: str, *, committed: bool, lost: int = 0) -> None:
        with self.lock:
            rows, size = self.segments.pop(name, (0, 0))
            self.spilled.discard(name)
            self.rows_pending -= rows
            self.disk_bytes -= size
            if committed:
                self.rows_written += rows - lost
            self.rows_lost += lost

    def check_budget(self) -> None:
        """Log loudly once at 80% of the budget; re-arm below 70%."""
        fraction = self.disk_bytes / self.budget_bytes if self.budget_bytes else 1.0
        if fraction >= WARN_FRACTION and not self.warned:
            self.warned = True
            logger.error(
                "request-log spool at %.0f%% of its disk budget (%d of %d bytes): the database "
                "is not taking rows; at 100%% requests are refused with 503",
                fraction * 100,
                self.disk_bytes,
                self.budget_bytes,
                extra={
                    "fields": {
                        "event": "request_log_disk_budget_high",
                        "disk_bytes": self.disk_bytes,
                        "budget_bytes": self.budget_bytes,
                    }
                },
            )
        elif fraction < REARM_FRACTION and self.warned:
            self.warned = False


class SegmentWriter:
    """Appends lines to the current segment; rotates by size and age. Thread-safe."""

    def __init__(
        self,
        directory: Path,
        account: SpoolAccount,
        *,
        max_bytes: int = 4 << 20,
        max_age_s: float = 0.2,
    ) -> None:
        self.directory = directory
        self.account = account
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._path: Path | None = None
        self._size = 0
        self._rows = 0
        self._opened_at = 0.0
        self._seq = 0

    def append(self, line: bytes) -> None:
        """Write one encoded line; raise ``OverloadedError`` rather than exceed the budget."""
        self.check_room(len(line))
        self._write(line, 1)

    def append_many(self, lines: list[bytes]) -> None:
        """Write several lines with one ``os.write`` (their room was checked when queued)."""
        self._write(b"".join(lines), len(lines))

    def check_room(self, nbytes: int, queued: int = 0) -> None:
        """Raise ``OverloadedError`` if ``nbytes`` more (after ``queued``) exceed the budget."""
        account = self.account
        if account.disk_bytes + queued + nbytes > account.budget_bytes:
            raise OverloadedError(
                f"request-log disk budget exhausted ({account.disk_bytes} of "
                f"{account.budget_bytes} bytes in {self.directory}): the database is not taking "
                "rows, so new requests are refused rather than lose their log rows; see the "
                "runbook section 'Request-log disk budget exhausted'",
                retry_after_s=5,
            )

    def _write(self, data: bytes, rows: int) -> None:
        account = self.account
        with self._lock:
            if self._fd is None:
                self._open()
            assert self._fd is not None
            view, written = memoryview(data), 0
            while written < len(data):  # a regular file takes it whole; never leave a torn tail
                written += os.write(self._fd, view[written:])
            self._size += written
            self._rows += rows
            with account.lock:
                account.disk_bytes += written
                account.rows_pending += rows
            if self._size >= self.max_bytes:
                self._close_current()
        if account.disk_bytes >= account.budget_bytes * WARN_FRACTION:
            account.check_budget()

    def rotate_if_due(self, now_monotonic: float) -> None:
        with self._lock:
            if (
                self._fd is not None
                and self._rows
                and now_monotonic - self._opened_at >= self.max_age_s
            ):
                self._close_current()

    def rotate(self) -> None:
        """Close the current segment now (shutdown, tests)."""
        with self._lock:
            if self._fd is not None:
                self._close_current()

    def close(self) -> None:
        self.rotate()

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        name = f"{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}{OPEN_SUFFIX}"
        path = self.directory / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # marks the segment as live
        self._fd, self._path, self._size, self._rows = fd, path, 0, 0
        self._opened_at = time.monotonic()

    def _close_current(self) -> None:
        assert self._fd is not None
        assert self._path is not None
        fd, path, rows, size = self._fd, self._path, self._rows, self._size
        self._fd = self._path = None
        closed = path.with_suffix(CLOSED_SUFFIX)
        if rows:
            path.rename(closed)  # rename before unlock: nobody can claim it as abandoned
            os.close(fd)
            self.account.add_closed(closed.name, rows, size, counted=True)
        else:
            path.unlink(missing_ok=True)
            os.close(fd)
