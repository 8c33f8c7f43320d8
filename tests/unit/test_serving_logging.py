"""Structured logs: one JSON access line per request; console format on request."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from test_serving_cases import settings_for, tiny_model

from falcon_platform.observability.logging import configure_logging
from falcon_platform.serving.app import create_app
from falcon_platform.testing.stores import fake_stores


def _flush() -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)


async def test_one_json_line_per_request_with_the_fields_an_sre_needs(
    tmp_path: Path, restore_root_logger: None
) -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    app = create_app(
        settings_for(tmp_path, worker_id="w2", release="r9"),
        model=tiny_model(),
        stores=fake_stores(),
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://f") as client:
            ok = await client.post(
                "/infer", json={"text": "fine"}, headers={"x-request-id": "log-1"}
            )
            bad = await client.post("/infer", json={"text": ""}, headers={"x-request-id": "log-2"})
    _flush()
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    access = [line for line in lines if line["logger"] == "falcon.access"]
    assert [(a["request_id"], a["client_request_id"]) for a in access] == [
        (ok.json()["request_id"], "log-1"),
        (bad.json()["request_id"], "log-2"),
    ]
    first, second = access
    assert first["level"] == "info"
    assert first["ts"].endswith("Z")
    assert (first["worker"], first["release"], first["model_version"]) == ("w2", "r9", "tiny-1")
    assert (first["endpoint"], first["status"], first["cache"]) == ("/infer", 200, "miss")
    assert first["latency_ms"] > 0
    assert (second["status"], second["error_type"]) == (422, "invalid_input")


ACCESS_FIELDS = {
    "request_id": "0123abcd", "client_request_id": None, "worker": "w1", "release": "r2",
    "model_version": "m-3", "endpoint": "/infer", "status": 200, "latency_ms": 0.123,
    "cache": "hit", "idempotency_hit": False, "error_type": None,
}  # fmt: skip


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_the_access_line_is_the_logging_calls_line_without_the_logging_call(
    fmt: str, restore_root_logger: None
) -> None:
    """``log_access`` writes the line ``logger.info("request", extra={"fields": ...})`` gives,
    same keys in the same order, without the LogRecord (timestamps aside)."""
    from falcon_platform.observability.logging import log_access

    stream = io.StringIO()
    configure_logging("INFO", fmt, stream=stream)
    logging.getLogger("falcon.access").info("request", extra={"fields": ACCESS_FIELDS})
    log_access(*ACCESS_FIELDS.values())
    _flush()
    via_logging, direct = stream.getvalue().splitlines()
    if fmt == "json":
        a, b = orjson.loads(via_logging), orjson.loads(direct)
        assert list(a) == list(b) == ["ts", "level", "logger", "msg", *ACCESS_FIELDS]
        assert {**a, "ts": None} == {**b, "ts": None}
        assert a["ts"][:10] == b["ts"][:10], "the same UTC date, both as ISO text"
    else:
        assert via_logging.split(" ", 1)[1] == direct.split(" ", 1)[1], "the stamp aside"


def test_console_format_is_one_readable_line(restore_root_logger: None) -> None:
    stream = io.StringIO()
    configure_logging("INFO", "console", stream=stream)
    logging.getLogger("falcon.access").info("request", extra={"fields": {"status": 200}})
    _flush()
    line = stream.getvalue().strip()
    assert "INFO" in line
    assert "falcon.access request status=200" in line
    assert not line.startswith("{")


def test_info_lines_are_written_within_the_flush_interval(restore_root_logger: None) -> None:
    """Buffered, but never stuck: an INFO line reaches the stream within ~0.25 s."""
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    logging.getLogger("falcon.access").info("buffered")
    deadline = time.monotonic() + 5
    while "buffered" not in stream.getvalue() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "buffered" in stream.getvalue()


def test_warnings_are_written_at_once(restore_root_logger: None) -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    logging.getLogger("falcon").warning("loud")
    assert "loud" in stream.getvalue()


def test_configure_logging_is_idempotent(restore_root_logger: None) -> None:
    configure_logging("INFO", "json", stream=io.StringIO())
    configure_logging("WARNING", "json", stream=io.StringIO())
    ours = [h for h in logging.getLogger().handlers if h.get_name() == "falcon"]
    assert len(ours) == 1
    assert logging.getLogger().level == logging.WARNING


@pytest.fixture
def tiny_switch_interval() -> Iterator[None]:
    """Threads switch every microsecond, so a race window of a few bytecodes is hit."""
    import sys

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


def test_no_line_is_lost_when_threads_append_while_the_flusher_writes(
    tiny_switch_interval: None,
) -> None:
    """Eight threads append 25,000 lines each while the flusher runs every millisecond and
    every 256th line forces a flush: every line is written exactly once."""
    import threading

    from falcon_platform.observability.logging import BufferedLineHandler

    stream = io.StringIO()
    handler = BufferedLineHandler(stream, interval_s=0.001)
    threads, per_thread = 8, 25_000
    start = threading.Barrier(threads)

    def append(thread: int) -> None:
        start.wait()
        for i in range(per_thread):
            handler.append_line(f"{thread}:{i}", urgent=i % 997 == 0)

    workers = [threading.Thread(target=append, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    handler.close()
    lines = stream.getvalue().splitlines()
    expected = {f"{t}:{i}" for t in range(threads) for i in range(per_thread)}
    assert len(lines) == len(expected), f"{len(expected) - len(set(lines))} lines lost"
    assert set(lines) == expected


def test_a_line_appended_during_a_flush_is_written_by_the_next_one() -> None:
    """The race the hammer test can only hit by luck, made certain: a thread is paused
    between reading the handler's queue and appending to it while another thread flushes.
    Its line must still reach the stream (a flush that swapped in a new list lost it)."""
    import threading

    from falcon_platform.observability.logging import BufferedLineHandler

    stream = io.StringIO()
    handler = BufferedLineHandler(stream, interval_s=3600)
    handler.append_line("first")
    reached, resume = threading.Event(), threading.Event()
    queue_type = type(handler._lines)

    class PausedQueue(queue_type):  # type: ignore[valid-type,misc]
        def append(self, line: str) -> None:
            reached.set()
            resume.wait(10)
            super().append(line)

    handler._lines = PausedQueue(handler._lines)
    appender = threading.Thread(target=handler.append_line, args=("second",))
    appender.start()
    assert reached.wait(10)
    handler.flush()  # another thread's flush while "second" is on its way in
    resume.set()
    appender.join(10)
    handler.close()
    assert stream.getvalue().splitlines() == ["first", "second"]


def test_timestamp_text_always_matches_its_second_across_threads(
    tiny_switch_interval: None,
) -> None:
    """Threads alternate between two seconds; the cached date part never lags the second."""
    import threading
    from datetime import UTC, datetime

    from falcon_platform.observability.logging import _timestamp

    seconds = (1_764_000_000, 1_764_000_001, 1_764_086_400)
    want = {s: datetime.fromtimestamp(s, UTC).strftime("%Y-%m-%dT%H:%M:%S") for s in seconds}
    wrong: list[tuple[int, str]] = []

    def stamp(offset: int) -> None:
        for i in range(20_000):
            second = seconds[(i + offset) % len(seconds)]
            text = _timestamp(second + 0.5)
            if text != f"{want[second]}.500Z":
                wrong.append((second, text))

    workers = [threading.Thread(target=stamp, args=(t,)) for t in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert not wrong, f"{len(wrong)} stamps with another second's date, e.g. {wrong[:3]}"


def test_timestamp_matches_datetimes_own_text_to_the_millisecond() -> None:
    """Milliseconds truncated (not rounded), zero-padded, for instants across the range."""
    import random
    from datetime import UTC, datetime

    from falcon_platform.observability.logging import _timestamp

    rng = random.Random(17)
    instants = [1_764_000_000.0, 1_764_000_000.0009, 1_764_000_000.9994, 1_764_000_000.5]
    # mid-millisecond, so float rounding cannot move an instant across a millisecond
    instants += [rng.randrange(4_102_444_800) + (rng.randrange(1000) + 0.5) / 1000
                 for _ in range(5_000)]  # fmt: skip
    for created in instants:
        want = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
        assert _timestamp(created) == want.replace("+00:00", "Z"), created
