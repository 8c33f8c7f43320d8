"""The bad-input table against a real server process, plus limits only a socket can show."""

from __future__ import annotations

import importlib.util
import socket
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from conftest import ServerProcess, read_http_response

_spec = importlib.util.spec_from_file_location(
    "serving_cases", Path(__file__).parents[1] / "unit" / "test_serving_cases.py"
)
assert _spec is not None
assert _spec.loader is not None
cases = importlib.util.module_from_spec(_spec)
sys.modules["serving_cases"] = cases
_spec.loader.exec_module(cases)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("case", cases.CASES, ids=[c.id for c in cases.CASES])
def test_bad_input_gets_clear_json_4xx_from_a_real_server(
    falcon_server: ServerProcess, case: Any
) -> None:
    with httpx.Client(base_url=falcon_server.url, timeout=10) as client:
        resp = client.post(case.path, content=case.body, headers=case.headers)
    assert resp.status_code == case.status, resp.text
    body = resp.json()
    assert body["error"] == case.error
    assert body["request_id"] == resp.headers["x-request-id"]
    assert len(body["detail"]) > 15


def test_declared_oversized_body_is_refused_before_it_is_sent(
    falcon_server: ServerProcess,
) -> None:
    """Content-Length over the limit: 413 arrives while the client has sent only the headers."""
    with socket.create_connection(("127.0.0.1", falcon_server.port), timeout=5) as sock:
        sock.sendall(
            b"POST /infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 50000000\r\n\r\n"
        )
        started = time.monotonic()
        raw = read_http_response(sock)
    assert raw.startswith(b"HTTP/1.1 413"), raw[:200]
    assert orjson.loads(raw.partition(b"\r\n\r\n")[2])["error"] == "payload_too_large"
    assert time.monotonic() - started < 5


def test_chunked_body_is_cut_off_at_the_limit(falcon_server: ServerProcess) -> None:
    """No Content-Length: bytes are counted as they stream; 413 comes before the upload ends."""
    chunk = b"a" * 65536
    with socket.create_connection(("127.0.0.1", falcon_server.port), timeout=5) as sock:
        sock.sendall(
            b"POST /infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        sent = 0
        for _ in range(20):  # 1.25 MiB, over the 1 MiB limit; never the terminating chunk
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        raw = read_http_response(sock)
    assert raw.startswith(b"HTTP/1.1 413"), raw[:200]


def test_stalled_body_gets_408_not_a_hang(falcon_server: ServerProcess) -> None:
    """Headers and half a body, then silence: 408 after FALCON_BODY_TIMEOUT_S (1 s here)."""
    with socket.create_connection(("127.0.0.1", falcon_server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n" + b'{"text": "half'
        )
        started = time.monotonic()
        raw = read_http_response(sock)
    assert raw.startswith(b"HTTP/1.1 408"), raw[:200]
    assert orjson.loads(raw.partition(b"\r\n\r\n")[2])["error"] == "request_timeout"
    assert 0.8 <= time.monotonic() - started < 8


def test_server_survives_the_table_and_still_answers(falcon_server: ServerProcess) -> None:
    with httpx.Client(base_url=falcon_server.url, timeout=10) as client:
        resp = client.post("/infer", json={"text": "still fine after all that"})
        assert resp.status_code == 200
        assert client.get("/healthz").status_code == 200
