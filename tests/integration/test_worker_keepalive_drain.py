"""Kept-alive clients across a drain and a connection's age: a real `falcon worker`, raw sockets.

A draining worker answers every request with `Connection: close` instead of closing idle
kept-alive connections under a client that is about to reuse them (issue 14: moving traffic
must not drop requests); a connection older than FALCON_MAX_CONNECTION_AGE_S is closed the same
way, so busy kept-alive clients reach new workers (a canary) too.
"""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import pytest

from conftest import read_http_response, start_server

# serial: the drain test paces a client against a process that is shutting down
pytestmark = [pytest.mark.integration, pytest.mark.serial]

INFER = (
    b"POST /infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b'Content-Length: 26\r\n\r\n{"text": "great product!"}'
)


def _closes(raw: bytes) -> bool:
    return b"\r\nconnection: close" in raw.partition(b"\r\n\r\n")[0].lower()


def test_a_draining_worker_tells_a_kept_alive_client_instead_of_racing_it(
    tmp_path: Path, model_path: Path
) -> None:
    """A client with 50 ms of think time between requests on one connection: before, the
    drain closed the connection while it was idle and the next request met a closed socket."""
    server = start_server(tmp_path / "home", model_path, via="worker")
    answers: list[bytes] = []
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        for n in range(200):
            if n == 10:
                server.proc.send_signal(signal.SIGTERM)
            sock.sendall(INFER)
            raw = read_http_response(sock)
            answers.append(raw)
            if not raw.startswith(b"HTTP/1.1 200") or _closes(raw):
                break
            time.sleep(0.05)
        sock.settimeout(5)
        after = sock.recv(1024)
    server.stop(timeout=30)
    assert all(a.startswith(b"HTTP/1.1 200") for a in answers), answers[-1][:300]
    assert len(answers) > 10, "the drain ended before the client's next request"
    assert _closes(answers[-1]), "the last answer must say Connection: close"
    assert not any(_closes(a) for a in answers[:10])
    assert after == b"", "the server closes the connection after that answer"


def test_a_connection_older_than_its_max_age_is_closed_after_its_next_answer(
    tmp_path: Path, model_path: Path
) -> None:
    server = start_server(
        tmp_path / "home", model_path, via="worker", env={"FALCON_MAX_CONNECTION_AGE_S": "1"}
    )
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(INFER)
            first = read_http_response(sock)
            time.sleep(1.3)  # older than its age, younger than the keep-alive timeout (5 s)
            sock.sendall(INFER)
            second = read_http_response(sock)
            sock.settimeout(5)
            after = sock.recv(1024)
    finally:
        server.stop(timeout=30)
    assert first.startswith(b"HTTP/1.1 200")
    assert not _closes(first)
    assert second.startswith(b"HTTP/1.1 200")
    assert _closes(second), second[:300]
    assert after == b""
