"""The load engine on real sockets: drops at the connection cap, time-outs, disconnects,
refused targets, and the achieved rate against a fast real server (uvicorn + a bare ASGI app).
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from falcon_platform.errors import DependencyError
from falcon_platform.loadtest import LoadOptions, LoadPlan, run_load
from falcon_platform.loadtest.engine import Outcome
from falcon_platform.testing.net import free_port, wait_for_http

# serial: asserts the engine holds its target rate within 2%
pytestmark = [pytest.mark.integration, pytest.mark.serial]

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A port whose listen backlog accepts connections that nobody ever reads or answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


@pytest.fixture
def slammer() -> Iterator[int]:
    """A server that accepts each connection, reads the request and closes without answering."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(2)
            with contextlib.suppress(OSError):
                conn.recv(65536)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        sock.close()


@pytest.fixture(scope="module")
def bare_server() -> Iterator[str]:
    """bench/bare_asgi.py under uvicorn: answers a constant in microseconds."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bare_asgi:app", "--app-dir", str(BENCH),
         "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning",
         "--loop", "uvloop", "--http", "httptools"],
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(url + "/infer", timeout=30, expect=200)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_requests_beyond_the_connection_cap_are_dropped_not_delayed(black_hole: int) -> None:
    """50 req/s for 1 s, 5 connections, a server that never answers: 5 sent (then stuck until
    their 1.5 s time-out), the other 45 dropped at their scheduled time and counted."""
    result = run_load(LoadPlan.constant(50, 1), f"http://127.0.0.1:{black_hole}",
                      options=LoadOptions(connections=5, timeout_s=1.5))  # fmt: skip
    assert (result.scheduled, result.sent, result.dropped) == (50, 5, 45)
    assert result.transport_errors == {"timeout": 5}
    assert result.responses == 0
    assert result.latency.count == 5  # a time-out enters the histogram at the time given up
    assert result.latency.p50_ms >= 1500
    assert [s.dropped for s in result.series] == [45]
    assert any("45 requests dropped" in w for w in result.warnings)
    assert result.judged(["dropped <= 0"]).passed is False


def test_a_server_that_hangs_up_is_counted_as_disconnects(slammer: int) -> None:
    result = run_load(LoadPlan.constant(20, 0.5), f"http://127.0.0.1:{slammer}",
                      options=LoadOptions(timeout_s=3))  # fmt: skip
    assert result.sent == 10
    assert result.transport_errors == {"disconnected": 10}
    assert result.error_ratio == 1.0


def test_nothing_listening_is_a_clear_error_before_any_load() -> None:
    with pytest.raises(DependencyError, match="no server accepts connections at http://127"):
        run_load(LoadPlan.constant(10, 1), f"http://127.0.0.1:{free_port()}")


def test_achieved_rate_within_2_percent_with_headroom(bare_server: str) -> None:
    """500 req/s for 3 s against a server that answers in microseconds: 1,500 scheduled and
    sent, every one answered 200; at least 98% of them inside the window, or, when a busy
    machine made the generator fall behind, the result says so (never a silent shortfall)."""
    result = run_load(LoadPlan.constant(500, 3), bare_server)
    print(f"\nachieved {result.achieved_rps:.1f} req/s of 500 ({result.achieved_rate_ratio:.3f}); "
          f"lag p99 {result.lag.p99_ms:.2f} ms; warnings {result.warnings}")  # fmt: skip
    assert result.scheduled == 1500
    assert result.statuses == {200: 1500}
    assert result.dropped == 0
    if result.achieved_rate_ratio >= 0.98:
        assert result.achieved_rps == pytest.approx(500, rel=0.02)
    else:
        late = f"{result.sent_late} requests were sent after the planned end"
        assert any(w.startswith(late) for w in result.warnings), result.warnings


def test_outcomes_carry_status_headers_and_body(bare_server: str) -> None:
    seen: list[Outcome] = []
    result = run_load(LoadPlan.constant(20, 0.5), bare_server, on_response=seen.append,
                      capture=True, options=LoadOptions(request_id_prefix="lt-"))  # fmt: skip
    assert result.sent == 10
    assert sorted(o.index for o in seen) == list(range(10))
    first = min(seen, key=lambda o: o.index)
    assert first.status == 200
    assert first.headers["content-type"] == "application/json"
    assert json.loads(first.body)["prediction"] == "positive"
    assert first.scheduled_t == 0.0
