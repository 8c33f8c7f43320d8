"""Big bodies on the control API neither grow the supervisor nor stall its loop (issue 11, 9).

Before: a 500 MB body to `POST /alerts/webhook` was read and parsed before the 401; the
supervisor peaked at 1.75 GB and its loop (probes, watchdog) stalled ~5 s. Real supervisor,
raw sockets streaming 500 MB: the answer (401 without the token, 413 with it) comes before the
body is read; the supervisor's RSS stays flat and `GET /health` keeps answering meanwhile.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from falcon_platform.testing.supervisor import start_supervisor, train_model

pytestmark = pytest.mark.integration

BODY_BYTES = 500 * 1_048_576
CHUNK = b"x" * 65536
TOKEN = "control-body-test-token-7Hq4pL9x2Wm5"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_model(tmp_path_factory.getbasetemp() / "bodies-model-home")


def _send_big_body(port: int, path: str, *, token: str | None, chunked: bool) -> tuple[bytes, int]:
    """Stream up to 500 MB; stop when the server answers or closes. Returns (response, sent)."""
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    if token:
        head.append(f"Authorization: Bearer {token}")
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {BODY_BYTES}")
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    sent = 0
    sock.setblocking(False)
    response = b""
    try:
        while sent < BODY_BYTES:
            try:
                data = sock.recv(65536)
                if data or response:
                    response += data
                    break
            except BlockingIOError:
                pass
            piece = b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK) if chunked else CHUNK
            try:
                sock.send(piece)
                sent += len(CHUNK)
            except BlockingIOError:
                time.sleep(0.001)
            except OSError:
                break  # the server closed after answering
        sock.setblocking(True)
        sock.settimeout(10)
        while b"\r\n\r\n" not in response:
            data = sock.recv(65536)
            if not data:
                break
            response += data
    finally:
        sock.close()
    return response, sent


def test_big_bodies_are_refused_before_they_are_read(tmp_path: Path, model_dir: Path) -> None:
    sup = start_supervisor(
        tmp_path, workers=1, model_dir=model_dir, env={"FALCON_ADMIN_TOKEN": TOKEN}
    )
    try:
        process = psutil.Process(sup.proc.pid)
        rss_before = process.memory_info().rss
        lags: list[float] = []
        errors: list[str] = []
        stop = threading.Event()

        def watch_health() -> None:
            with httpx.Client(timeout=10) as client:
                while not stop.is_set():
                    started = time.monotonic()
                    try:
                        client.get(sup.control_url + "/health")
                    except httpx.HTTPError as exc:
                        errors.append(repr(exc))
                    lags.append(time.monotonic() - started)
                    time.sleep(0.05)

        watcher = threading.Thread(target=watch_health, daemon=True)
        watcher.start()
        deadline = time.monotonic() + 10
        while not lags and time.monotonic() < deadline:
            time.sleep(0.01)  # the watcher measures from before the first big body
        cases = [
            ("/alerts/webhook", None, False, b"401"),
            ("/alerts/webhook", None, True, b"401"),
            ("/alerts/webhook", TOKEN, False, b"413"),
            ("/alerts/webhook", TOKEN, True, b"413"),
            ("/restart", None, False, b"401"),
        ]
        results = []
        for path, token, chunked, expected in cases:
            started = time.monotonic()
            response, sent = _send_big_body(sup.control_port, path, token=token, chunked=chunked)
            elapsed = time.monotonic() - started
            results.append((path, token is not None, chunked, response[:12], sent, elapsed))
            assert response.startswith(b"HTTP/1.1 " + expected), (path, token, chunked, response)
            assert sent < 64 * 1_048_576, f"{sent} bytes went out before the answer"
        time.sleep(0.5)
        stop.set()
        watcher.join(timeout=15)
        rss_after = process.memory_info().rss
        growth_mb = (rss_after - rss_before) / 1_048_576
        worst = max(lags)
        print(
            f"\n500 MB bodies: {[(r[0], r[1], r[2], r[3], r[4] // 1_048_576, round(r[5], 2)) for r in results]}"
            f"\nsupervisor RSS growth {growth_mb:.1f} MB; worst /health latency {worst * 1000:.0f} ms "
            f"over {len(lags)} probes"
        )
        assert not errors, errors
        assert growth_mb < 50, growth_mb
        assert worst < 1.0, worst
        # A normal webhook with the token still works (the guard replays the body it read).
        ok = httpx.post(
            sup.control_url + "/alerts/webhook",
            json={"version": "4", "status": "firing", "alerts": []},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        )
        assert ok.status_code == 202, ok.text
        bad = httpx.post(
            sup.control_url + "/alerts/webhook",
            content=b'{"version": "4"}',
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            timeout=10,
        )
        assert bad.status_code == 422, bad.text
        assert "not an Alertmanager webhook body" in bad.json()["detail"]
    finally:
        sup.stop()
