"""The public port against hostile connections: a real `falcon worker`, real sockets.

Idle and half-sent connections are closed (header and keep-alive timeouts), oversized heads
are answered 431 before they are buffered, the connection cap evicts idle connections or
refuses with 503, and a descriptor reserve keeps the admin socket and the request log working
while a flood holds the port.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from conftest import BIN, ServerProcess, read_http_response, start_server
from falcon_platform.testing.net import free_port, wait_for_http

# serial: asserts how fast hostile connections are refused, and a descriptor reserve under a flood
pytestmark = [pytest.mark.integration, pytest.mark.serial]

LIMITS = {
    "FALCON_HEADER_TIMEOUT_S": "1",
    "FALCON_KEEPALIVE_TIMEOUT_S": "1",
    "FALCON_MAX_HEADER_BYTES": "8192",
    "FALCON_MAX_HEADER_COUNT": "20",
    "FALCON_MAX_CONNECTIONS": "30",
    "FALCON_BODY_TIMEOUT_S": "5",
}
INFER = (
    b"POST /infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b'Content-Length: 26\r\n\r\n{"text": "great product!"}'
)


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory, model_path: Path) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("conn-home")
    admin = str(home / "admin.sock")
    server = start_server(
        home, model_path, via="worker", env=LIMITS, args=("--admin-socket", admin)
    )
    yield server
    try:
        server.stop(signal.SIGTERM, timeout=30)
    except subprocess.TimeoutExpired:
        server.stop(signal.SIGKILL)


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def _closed_after(sock: socket.socket) -> float:
    """Seconds until the server closes ``sock`` (reads and discards what it sends)."""
    started = time.monotonic()
    sock.settimeout(10)
    while True:
        try:
            if not sock.recv(65536):
                break
        except ConnectionResetError:
            break
    return time.monotonic() - started


def _error(raw: bytes) -> dict[str, str]:
    body: dict[str, str] = orjson.loads(raw.partition(b"\r\n\r\n")[2])
    return body


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(
    worker: ServerProcess,
) -> None:
    with _connect(worker.port) as sock:
        waited = _closed_after(sock)
    assert 0.8 <= waited < 3.0, waited


def test_half_a_request_head_gets_408_then_the_connection_closes(worker: ServerProcess) -> None:
    with _connect(worker.port) as sock:
        sock.sendall(b"POST /infer HTTP/1.1\r\nHost: x\r\nContent-Type: appl")
        started = time.monotonic()
        raw = read_http_response(sock)
        waited = time.monotonic() - started
        assert _closed_after(sock) < 3.0
    assert raw.startswith(b"HTTP/1.1 408"), raw[:200]
    assert b"connection: close" in raw.lower()
    body = _error(raw)
    assert body["error"] == "request_timeout"
    assert "FALCON_HEADER_TIMEOUT_S" in body["detail"]
    assert 0.8 <= waited < 3.0, waited


def test_an_idle_kept_alive_connection_is_closed_after_the_keepalive_timeout(
    worker: ServerProcess,
) -> None:
    with _connect(worker.port) as sock:
        sock.sendall(INFER)
        assert read_http_response(sock).startswith(b"HTTP/1.1 200")
        waited = _closed_after(sock)
    assert 0.8 <= waited < 3.0, waited


def test_a_head_over_the_byte_limit_gets_431_with_the_json_error(worker: ServerProcess) -> None:
    with _connect(worker.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n")
        raw = read_http_response(sock)
    assert raw.startswith(b"HTTP/1.1 431"), raw[:200]
    body = _error(raw)
    assert body["error"] == "headers_too_large"
    assert "FALCON_MAX_HEADER_BYTES" in body["detail"]
    assert len(body["request_id"]) == 32


def test_too_many_header_fields_get_431(worker: ServerProcess) -> None:
    fields = b"".join(b"X-F%d: v\r\n" % i for i in range(21))
    with _connect(worker.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
        raw = read_http_response(sock)
    assert raw.startswith(b"HTTP/1.1 431"), raw[:200]
    assert "header fields" in _error(raw)["detail"]


def test_a_60_mb_header_is_refused_at_once_and_the_worker_keeps_answering(
    worker: ServerProcess,
) -> None:
    """The seed of the issue: 60 MB of header stalled a worker for seconds; 119 MB killed it."""
    rss_before = _rss_kb(worker.proc.pid)
    with _connect(worker.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        started = time.monotonic()
        chunk = b"a" * (1 << 20)
        try:
            for _ in range(60):
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and stopped reading: expected
        raw = read_http_response(sock)
    answered = time.monotonic() - started
    assert raw.startswith(b"HTTP/1.1 431"), raw[:200]
    assert answered < 5.0, answered
    started = time.monotonic()
    assert httpx.get(f"{worker.url}/healthz", timeout=5).status_code == 200
    assert time.monotonic() - started < 1.0
    assert _rss_kb(worker.proc.pid) - rss_before < 30_000  # never buffered the 60 MB


def _wait_in_flight(worker: ServerProcess, n: int, timeout: float = 10) -> None:
    """Poll the worker's metrics on its admin socket until ``n`` requests are in flight."""
    uds = httpx.HTTPTransport(uds=str(worker.home / "admin.sock"))
    deadline = time.monotonic() + timeout
    seen = -1.0
    with httpx.Client(transport=uds, base_url="http://admin", timeout=5) as client:
        while time.monotonic() < deadline:
            for line in client.get("/metrics").text.splitlines():
                if line.startswith("falcon_inflight_requests{"):
                    seen = float(line.rsplit(" ", 1)[1])
            if seen == n:
                return
            time.sleep(0.05)
    raise AssertionError(f"{n} requests never in flight (last seen {seen})")


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_beyond_the_cap_idle_connections_are_evicted_and_new_clients_served(
    worker: ServerProcess,
) -> None:
    """200 idle sockets against a cap of 30: the worker holds at most 30, a new client's
    request is answered 200, and most of the idle sockets have been closed."""
    base = _fds(worker.proc.pid)
    idle = [_connect(worker.port) for _ in range(200)]
    try:
        with _connect(worker.port) as sock:
            sock.sendall(INFER)
            raw = read_http_response(sock)
        assert raw.startswith(b"HTTP/1.1 200"), raw[:200]
        assert _fds(worker.proc.pid) <= base + 30 + 5
        closed = 0
        for sock in idle:
            sock.settimeout(0.05)
            try:
                closed += sock.recv(1) == b""
            except TimeoutError:
                pass
            except ConnectionResetError:
                closed += 1
        assert closed >= 200 - 30, closed
    finally:
        for sock in idle:
            sock.close()


def test_when_every_connection_is_busy_a_new_one_gets_503_with_retry_after(
    worker: ServerProcess,
) -> None:
    """30 requests waiting for their bodies fill the cap; nothing is idle to evict."""
    busy = []
    try:
        for _ in range(30):
            sock = _connect(worker.port)
            sock.sendall(
                b"POST /infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100\r\n\r\n{"
            )
            busy.append(sock)
        _wait_in_flight(worker, 30)  # every head read: nothing left to evict
        with _connect(worker.port) as sock:
            sock.sendall(INFER)
            raw = read_http_response(sock)
        assert raw.startswith(b"HTTP/1.1 503"), raw[:200]
        assert b"retry-after: 1" in raw.lower()
        assert _error(raw)["error"] == "too_many_connections"
    finally:
        for sock in busy:
            sock.close()


def test_metrics_count_the_connections_closed_by_reason(worker: ServerProcess) -> None:
    text = httpx.get(f"{worker.url}/metrics", timeout=5).text
    counts = {
        line.split('reason="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("falcon_connections_closed_total{")
    }
    assert counts["evicted"] >= 170
    assert counts["headers_too_large"] >= 3
    assert counts["header_timeout"] >= 1
    assert "falcon_connections_open{" in text


def test_a_flood_leaves_the_descriptor_reserve_to_the_admin_socket_and_request_log(
    tmp_path: Path, model_path: Path
) -> None:
    """RLIMIT_NOFILE 256 (hard), FALCON_MAX_CONNECTIONS far above it: the cap comes from the
    reserve, so 400 flood connections never exhaust the worker's descriptors; the admin
    socket answers, a good request is answered and its row reaches the database."""
    port = free_port()
    home = tmp_path / "home"
    admin = tmp_path / "admin.sock"
    env = {
        **os.environ,
        "FALCON_HOME": str(home),
        "FALCON_MODEL_PATH": str(model_path),
        "FALCON_LOG_LEVEL": "WARNING",
        "FALCON_MAX_CONNECTIONS": "100000",
        "FALCON_FD_RESERVE": "128",
    }
    home.mkdir()
    log = tmp_path / "worker.log"

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "falcon"), "worker", "--host", "127.0.0.1", "--port", str(port),
             "--admin-socket", str(admin)],
            env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=low_limit,
        )  # fmt: skip
    flood: list[socket.socket] = []
    try:
        wait_for_http(f"http://127.0.0.1:{port}/readyz", timeout=90)
        for _ in range(400):
            flood.append(_connect(port))
        assert _fds(proc.pid) < 256 - 64  # the reserve is intact
        uds = httpx.HTTPTransport(uds=str(admin))
        with httpx.Client(transport=uds, base_url="http://admin", timeout=5) as client:
            assert client.get("/healthz").status_code == 200
        with _connect(port) as sock:
            sock.sendall(INFER.replace(b"Host: x", b"Host: x\r\nX-Request-ID: flood-ok"))
            raw = read_http_response(sock)
        assert raw.startswith(b"HTTP/1.1 200"), raw[:300]
        deadline = time.monotonic() + 20
        rows = 0
        while time.monotonic() < deadline and not rows:
            with sqlite3.connect(home / "data" / "falcon.db") as db:
                rows = db.execute(
                    "SELECT COUNT(*) FROM request_log WHERE client_request_id = 'flood-ok'"
                ).fetchone()[0]
            time.sleep(0.1)
        assert rows == 1
        assert "Too many open files" not in log.read_text(errors="replace")
    finally:
        for sock in flood:
            sock.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
