"""No worker ready: fast 503s from the supervisor, counted, logged, alerted (issue 11, finding 0).

Before: with every worker dead the kernel kept accepting connections that nobody answered (one
curl hung ~10 minutes), no 5xx was ever produced, and the error-rate alerts stayed silent
during 100% failure. Real processes: a real `falcon up`, SIGKILL of every worker under load.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from falcon_platform.testing.supervisor import LoadGenerator, start_supervisor, train_model

pytestmark = pytest.mark.e2e

# Killed workers stay down for a minute (long back-off): the test sees the outage, not the cure.
# The error-rate alert is tuned to fire within seconds so the test stays short.
SPEC = """
restart:
  initial_backoff: 60s
  max_backoff: 60s
  jitter: 0
  crash_loop_restarts: 50
probes:
  period: 1s
alerts:
  evaluation_interval: 1s
  error_rate_for: 5s
"""


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_model(tmp_path_factory.getbasetemp() / "falcon-model-home")


def _rows(home: Path, worker: str, status: int) -> set[str]:
    with closing(sqlite3.connect(str(home / "data" / "falcon.db"))) as conn:
        found = conn.execute(
            "SELECT request_id FROM request_log WHERE worker = ? AND status_code = ?",
            (worker, status),
        ).fetchall()
    return {r[0] for r in found}


def test_every_worker_killed_under_load_gets_fast_503s_rows_and_the_error_rate_alert(
    tmp_path: Path, model_dir: Path
) -> None:
    sup = start_supervisor(tmp_path, workers=2, spec_yaml=SPEC, model_dir=model_dir)
    try:
        with LoadGenerator(sup.url, rps=40, timeout=5.0) as load:
            time.sleep(3)
            pids = [w["pid"] for w in sup.status()["workers"] if w["state"] == "ready"]
            assert len(pids) == 2
            killed_at = time.monotonic()
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            # A client asking directly: the answer is a 503 with Retry-After and the usual
            # JSON error body, not a hang: it comes back within the client's time-out and
            # while no worker is back (the next restart is ~60 s away), so it did not wait for
            # one. The time each answer took is printed, not asserted (a shared machine).
            deadline = time.monotonic() + 10
            probe_ids: list[str] = []
            probe_s: list[float] = []
            while time.monotonic() < deadline and len(probe_ids) < 5:
                started = time.monotonic()
                response = httpx.post(
                    sup.url + "/infer",
                    json={"text": "anyone there?"},
                    headers={"X-Request-ID": "client-chosen-1"},
                    timeout=5,
                )
                elapsed = time.monotonic() - started
                if response.status_code != 503:
                    time.sleep(0.05)  # the kill not reaped yet: a worker answered
                    continue
                probe_s.append(elapsed)
                body = response.json()
                assert set(body) == {"error", "detail", "request_id"}
                assert body["error"] == "no_ready_worker"
                assert "retry after" in body["detail"]
                retry_after = int(response.headers["retry-after"])
                assert 50 <= retry_after <= 61, retry_after  # the next restart is ~60 s away
                assert response.headers["x-request-id"] == "client-chosen-1"
                probe_ids.append(body["request_id"])
            assert len(probe_ids) == 5
            first_503_after = time.monotonic() - killed_at
            assert not any(w["ready"] for w in sup.status()["workers"]), "answered, no worker back"
            # The supervisor's own evaluator sees the 503s: FalconHighErrorRate fires.
            fired = sup.wait_for_event(
                lambda e: e["details"].get("name") == "FalconHighErrorRate",
                kind="alert_firing",
                timeout=60,
            )
            time.sleep(1)
        result = load.result()
        print(
            f"\nall workers killed: first 503 {first_503_after:.2f} s after the kill; "
            f"alert fired {fired['ts'] - (time.time() - (time.monotonic() - killed_at)):.1f} s "
            f"after; direct 503s took {[round(x * 1000, 1) for x in probe_s]} ms; "
            f"load {result.describe()}"
        )
        # No hang: no request of the load timed out (5 s) or went unsent (a time-out or a
        # dropped request would be an error here; its p99 is printed above, not asserted). The
        # only failures allowed are the requests in flight inside the killed workers (40
        # req/s, a few ms each); every other request got an answer, 200 before, 503 after.
        assert set(result.errors) <= {"disconnected", "protocol_error"}, result.describe()
        assert sum(result.errors.values()) <= 4, result.describe()
        assert result.statuses.get(503, 0) >= 100, result.describe()
        assert set(result.statuses) <= {200, 503}, result.describe()
        # Counted in the same family and labels as a worker's requests.
        metrics = httpx.get(sup.control_url + "/metrics", timeout=10).text
        line = next(
            ln
            for ln in metrics.splitlines()
            if ln.startswith("falcon_requests_total{")
            and 'worker="supervisor"' in ln
            and 'endpoint="/infer"' in ln
        )
        assert 'status="503"' in line
        assert 'cache="none"' in line
        assert float(line.rsplit(" ", 1)[1]) == result.statuses[503] + len(probe_ids)
        # ...and in the request log, one row per 503 (shipped by the supervisor's own shipper).
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            rows = _rows(sup.home, "supervisor", 503)
            if len(rows) >= result.statuses[503] + len(probe_ids):
                break
            time.sleep(0.2)
        assert set(probe_ids) <= rows
        assert len(rows) == result.statuses[503] + len(probe_ids)
        [unavailable] = sup.events("service_unavailable")[-1:]
        assert unavailable["details"]["why"] == "workers are restarting after a crash"
    finally:
        sup.stop()
