"""Real server processes: idempotency across requests and restarts, graceful SIGTERM, SIGKILL.

The request log is checked in the embedded SQLite database
(``<FALCON_HOME>/data/falcon.db``, table ``request_log``).
"""

from __future__ import annotations

import signal
import socket
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import orjson
import pytest

from conftest import read_http_response, start_server

pytestmark = pytest.mark.integration


def _rows(home: Path) -> Counter[str]:
    db = home / "data" / "falcon.db"
    if not db.exists():
        return Counter()
    with sqlite3.connect(db, timeout=10) as conn:
        # The tests send their own X-Request-ID (kept in client_request_id; the key is the
        # server's), one per request.
        query = "SELECT client_request_id FROM request_log"
        return Counter(rid for (rid,) in conn.execute(query))


def _wait_for_rows(home: Path, wanted: set[str], timeout: float = 30) -> Counter[str]:
    deadline = time.monotonic() + timeout
    rows = _rows(home)
    while not wanted <= set(rows) and time.monotonic() < deadline:
        time.sleep(0.2)
        rows = _rows(home)
    return rows


def _wait_for_open_connections(url: str, count: int, timeout: float = 10) -> None:
    """Until a scrape of ``url``/metrics shows exactly ``count`` open connections (its own
    included)."""
    deadline = time.monotonic() + timeout
    while True:
        text = httpx.get(f"{url}/metrics", timeout=5).text
        seen = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("falcon_connections_open")
        )
        if seen == count:
            return
        assert time.monotonic() < deadline, f"{seen:g} open connections, waited for {count}"
        time.sleep(0.02)


def test_idempotency_key_replays_across_requests_and_restarts(
    tmp_path: Path, model_path: Path
) -> None:
    """Keys live in SQLite: a replay after a restart still returns the stored answer."""
    home = tmp_path / "home"
    headers = {"Idempotency-Key": "order-42"}
    server = start_server(home, model_path)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            first = client.post("/infer", json={"text": "charge it once"}, headers=headers)
            again = client.post("/infer", json={"text": "charge it once"}, headers=headers)
            clash = client.post("/infer", json={"text": "something else"}, headers=headers)
    finally:
        assert server.stop() in (0, -signal.SIGTERM)
    assert (first.json()["idempotency_hit"], again.json()["idempotency_hit"]) == (False, True)
    assert again.json()["probabilities"] == first.json()["probabilities"]
    assert (clash.status_code, clash.json()["error"]) == (422, "idempotency_conflict")

    server = start_server(home, model_path)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            later = client.post("/infer", json={"text": "charge it once"}, headers=headers)
    finally:
        server.stop()
    assert later.json()["idempotency_hit"] is True
    assert later.json()["probabilities"] == first.json()["probabilities"]


def test_sigterm_finishes_in_flight_fails_readiness_ships_log_and_exits_0(
    tmp_path: Path, model_path: Path
) -> None:
    """`falcon worker`: a request mid-upload at SIGTERM still gets 200; new connections are
    refused; the process exits 0; the request log holds that request's row."""
    home = tmp_path / "home"
    server = start_server(home, model_path, via="worker")
    body = orjson.dumps({"text": "arrived during shutdown"})
    try:
        # Alone, a scrape sees one open connection (its own); then ours is opened and the
        # server must have it (two) before SIGTERM: polled, not slept on.
        _wait_for_open_connections(server.url, 1)
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(
                b"POST /infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"X-Request-ID: in-flight-1\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:10]
            )
            _wait_for_open_connections(server.url, 2)  # it has the request, waits for the body
            server.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10
            while True:  # no new connections once draining (polled: no race with the drain)
                try:
                    httpx.get(f"{server.url}/readyz", timeout=2)
                except httpx.HTTPError:
                    break
                assert time.monotonic() < deadline, "still accepting connections after SIGTERM"
                time.sleep(0.05)
            sock.sendall(body[10:])
            raw = read_http_response(sock)
        exit_code = server.proc.wait(30)
    finally:
        if server.proc.poll() is None:
            server.stop(signal.SIGKILL)
    assert raw.startswith(b"HTTP/1.1 200"), raw[:300]
    assert b"x-request-id: in-flight-1\r\n" in raw.lower()
    assert exit_code == 0, server.log()[-3000:]
    assert _rows(home)["in-flight-1"] == 1  # shipped to SQLite during shutdown


def test_sigkill_mid_load_loses_no_row_of_a_2xx(tmp_path: Path, model_path: Path) -> None:
    """SIGKILL under load, restart: every request that got a 2xx has exactly one row."""
    home = tmp_path / "home"
    server = start_server(home, model_path)
    ok: set[str] = set()
    sent: set[str] = set()
    stop = threading.Event()
    lock = threading.Lock()

    def load(n: int) -> None:
        with httpx.Client(base_url=server.url, timeout=5) as client:
            i = 0
            while not stop.is_set():
                rid = f"k{n}-{i}"
                i += 1
                with lock:
                    sent.add(rid)
                try:
                    resp = client.post(
                        "/infer", json={"text": f"load {n} {i}"}, headers={"x-request-id": rid}
                    )
                except httpx.HTTPError:
                    continue
                if 200 <= resp.status_code < 300:
                    with lock:
                        ok.add(rid)

    threads = [threading.Thread(target=load, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(ok) < 300:  # enough 2xx to mean something: counted, not a fixed 3 s
        assert time.monotonic() < deadline, f"only {len(ok)} 2xx in 60 s"
        time.sleep(0.05)
    server.stop(signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join(10)
    assert len(ok) > 50, "too little load reached the server to mean anything"

    restarted = start_server(home, model_path)  # ships what the killed process left
    try:
        rows = _wait_for_rows(home, ok)
    finally:
        restarted.stop()
    rows = _rows(home)
    missing = ok - set(rows)
    assert not missing, f"{len(missing)} 2xx requests have no row, e.g. {sorted(missing)[:5]}"
    assert all(rows[rid] == 1 for rid in ok)
    # Rows beyond the 2xx set can only be requests in flight at the kill (row appended,
    # response not yet received): at most one per client connection.
    extra = set(rows) - ok
    assert extra <= sent
    assert len(extra) <= len(threads)
