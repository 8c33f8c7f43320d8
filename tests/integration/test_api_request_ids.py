"""Exactly one request-log row per 2xx, whatever X-Request-ID clients send: a real server, the
rows read back from its SQLite database after the shipper moved them."""

from __future__ import annotations

import sqlite3
import time

import httpx
import pytest

from conftest import ServerProcess

pytestmark = pytest.mark.integration


def _rows(server: ServerProcess, ids: list[str], timeout: float = 20) -> dict[str, str | None]:
    """request_id -> client_request_id of ``ids``, once all of them have been shipped."""
    deadline = time.monotonic() + timeout
    found: dict[str, str | None] = {}
    marks = ",".join("?" * len(ids))
    while time.monotonic() < deadline:
        with sqlite3.connect(server.home / "data" / "falcon.db") as db:
            found = dict(
                db.execute(
                    f"SELECT request_id, client_request_id FROM request_log "
                    f"WHERE request_id IN ({marks})",
                    ids,
                ).fetchall()
            )
        if len(found) == len(ids):
            return found
        time.sleep(0.1)
    raise AssertionError(f"{len(found)} of {len(ids)} rows shipped")


def test_duplicate_and_predicted_request_ids_never_share_or_steal_a_row(
    falcon_server: ServerProcess,
) -> None:
    """Three requests with one X-Request-ID (the old log kept one row of three), then requests
    that claim the server ids just handed out (the old ids were a prefix + counter)."""
    with httpx.Client(base_url=falcon_server.url, timeout=10) as client:
        dup = [
            client.post("/infer", json={"text": f"dup {i}"}, headers={"X-Request-ID": "same-id"})
            for i in range(3)
        ]
        issued = [r.json()["request_id"] for r in dup]
        claims = [
            client.post("/infer", json={"text": "thief"}, headers={"X-Request-ID": rid})
            for rid in issued
        ]
        plain = [client.post("/infer", json={"text": f"plain {i}"}) for i in range(3)]
    answers = dup + claims + plain
    assert [r.status_code for r in answers] == [200] * 9
    assert [r.headers["x-request-id"] for r in dup] == ["same-id"] * 3
    keys = [r.json()["request_id"] for r in answers]
    assert len(set(keys)) == 9
    rows = _rows(falcon_server, keys)
    assert [rows[k] for k in keys] == ["same-id"] * 3 + issued + [None] * 3
