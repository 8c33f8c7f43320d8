"""A supervisor restart keeps the journal and the SLI store; the control API's read side."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from falcon_platform.observability import names
from falcon_platform.testing.supervisor import start_supervisor, train_model

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_model(tmp_path_factory.getbasetemp() / "falcon-model-home")


def test_journal_and_sli_store_survive_supervisor_restart(tmp_path: Path, model_dir: Path) -> None:
    """Stop and start again on the same FALCON_HOME: the first run's events and SLI samples are
    still queryable, and the aggregated /metrics is valid Prometheus text (promtool)."""
    first = start_supervisor(tmp_path, workers=1, model_dir=model_dir)
    try:
        with httpx.Client(timeout=10) as client:
            for n in range(30):
                assert (
                    client.post(first.url + "/infer", json={"text": f"hello {n}"}).status_code
                    == 200
                )

        def scraped_all(_: object) -> bool:
            series = httpx.get(
                first.control_url + "/sli",
                params={"name": names.REQUESTS, "start": 0, "match": "status=200"},
                timeout=10,
            ).json()["series"]
            return any(v >= 30 for s in series for _, v in s["samples"])

        first.wait_until(scraped_all, timeout=20, what="a scrape with all 30 requests counted")
        metrics = httpx.get(first.control_url + "/metrics", timeout=10).text
    finally:
        assert first.stop() == 0
    stopped_at = time.time()
    assert metrics.count(f"# TYPE {names.REQUESTS} counter") == 1
    assert f"{names.SUPERVISOR_UP} 1.0" in metrics
    assert f'{names.WORKERS_READY}{{release="r0"}} 1.0' in metrics
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is required"
    check = subprocess.run(
        [promtool, "check", "metrics"], input=metrics, text=True, capture_output=True, check=False
    )
    assert "error" not in (check.stdout + check.stderr).lower(), check.stdout + check.stderr

    second = start_supervisor(tmp_path, workers=1, model_dir=model_dir)
    try:
        kinds = [e["kind"] for e in second.events()]
        assert kinds.count("supervisor_started") == 2
        assert kinds.count("supervisor_stopped") == 1
        assert kinds.count("settings_fingerprint") == 2
        # Only the (free, random) ports differ between the two starts, and the journal says so.
        changed = second.events("config_changed")
        assert len(changed) == 1
        assert {c["key"] for c in changed[0]["details"]["changes"]} == {"port", "control_port"}
        series = httpx.get(
            second.control_url + "/sli",
            params={"name": names.REQUESTS, "start": 0, "end": stopped_at, "match": "status=200"},
            timeout=10,
        ).json()["series"]
        assert series, "the first run's request counts are gone"
        assert max(v for s in series for _, v in s["samples"]) >= 30
        restarts = httpx.get(
            second.control_url + "/sli",
            params={"name": names.WORKERS_READY, "start": 0, "end": stopped_at},
            timeout=10,
        ).json()["series"]
        assert restarts, "the supervisor's own series from the first run are gone"
    finally:
        assert second.stop() == 0
