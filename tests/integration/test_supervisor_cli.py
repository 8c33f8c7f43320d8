"""The CLI against a real supervisor: --detach / down, check-health, the admin token, events."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from falcon_platform.testing.net import free_port
from falcon_platform.testing.supervisor import train_model

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_model(tmp_path_factory.getbasetemp() / "falcon-model-home")


def _falcon(
    env: dict[str, str], *args: str, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "falcon_platform.cli", *args],
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_detach_status_token_events_down(tmp_path: Path, model_dir: Path) -> None:
    """`falcon up --detach` returns once serving; status --json has the documented fields;
    state changes need the 0600 admin token; `falcon down` drains and stops everything."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FALCON_")}
    env |= {
        "FALCON_HOME": str(tmp_path / "home"),
        "FALCON_PORT": str(free_port()),
        "FALCON_CONTROL_PORT": str(free_port()),
        "FALCON_MODEL_PATH": str(model_dir),
        "FALCON_SPEC_PATH": str(tmp_path / "falcon.yaml"),
        "FALCON_LOG_LEVEL": "WARNING",
    }
    (tmp_path / "falcon.yaml").write_text("version: 1\n")
    control = f"http://127.0.0.1:{env['FALCON_CONTROL_PORT']}"
    up = _falcon(env, "up", "--detach", "--workers", "1")
    assert up.returncode == 0, up.stderr
    assert "falcon down" in up.stdout
    try:
        token_file = tmp_path / "home" / "run" / "admin_token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        _falcon(env, "check-health")  # may still be booting; wait via status below
        deadline_status = None
        for _ in range(600):
            deadline_status = json.loads(_falcon(env, "status", "--json").stdout)
            if deadline_status["workers"] and deadline_status["workers"][0]["state"] == "ready":
                break
        assert deadline_status is not None
        worker = deadline_status["workers"][0]
        assert {"pid", "release", "state", "rss_bytes", "restarts"} <= set(worker)
        assert worker["rss_bytes"] > 10 * 2**20
        assert 0 < worker["uss_bytes"] <= worker["pss_bytes"] <= worker["rss_bytes"]
        health = _falcon(env, "check-health")
        assert health.returncode == 0
        assert health.stdout.strip() == "healthy: 1/1 workers ready"
        # state changes need the token: none, or a wrong one -> 401
        assert httpx.post(control + "/restart", timeout=10).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert httpx.post(control + "/shutdown", headers=wrong, timeout=10).status_code == 401
        # desired state is workers per release: scale r0 to 2, then back to 1 (newest retired)
        auth = {"Authorization": "Bearer " + token_file.read_text().strip()}
        scaled = httpx.put(
            control + "/desired", json={"desired": {"r0": 2}}, headers=auth, timeout=10
        )
        assert scaled.json() == {"r0": 2}
        for _ in range(600):
            workers = json.loads(_falcon(env, "status", "--json").stdout)["workers"]
            if sum(w["state"] == "ready" for w in workers) == 2:
                break
        assert sorted(w["worker"] for w in workers if w["state"] == "ready") == ["w1", "w2"]
        httpx.put(control + "/desired", json={"desired": {"r0": 1}}, headers=auth, timeout=10)
        for _ in range(600):
            workers = json.loads(_falcon(env, "status", "--json").stdout)["workers"]
            if [w["worker"] for w in workers] == ["w1"]:
                break
        assert [w["worker"] for w in workers] == ["w1"]
        unknown = httpx.put(
            control + "/desired", json={"desired": {"r9": 1}}, headers=auth, timeout=10
        )
        assert unknown.status_code == 409
        events = json.loads(
            _falcon(
                env,
                "events",
                "--since",
                "10m",
                "--kind",
                "worker_ready",
                "--worker",
                "w1",
                "--json",
            ).stdout
        )
        assert [e["kind"] for e in events] == ["worker_ready"]
        assert events[0]["time"].endswith("Z")
        assert len(events[0]["time"]) == len("2026-01-01T00:00:00.000Z")
        # a restart whose worker cannot boot says why, and where to see more (issue 12)
        missing = tmp_path / "no-model"
        bad = _falcon(env, "restart", "--set", f"FALCON_MODEL_PATH={missing}", timeout=120)
        assert bad.returncode == 6, bad.stderr
        assert f"no model at {missing}" in bad.stderr
        assert "old workers kept serving" in bad.stderr
        assert "`falcon events --release r1`" in bad.stderr
        assert _falcon(env, "check-health").returncode == 0
    finally:
        down = _falcon(env, "down")
    assert down.returncode == 0, down.stderr
    with pytest.raises(httpx.ConnectError):
        httpx.get(control + "/status", timeout=2)
    after = _falcon(env, "check-health")
    assert after.returncode == 1
    assert "no Falcon supervisor answers" in after.stdout


def test_standalone_worker_serves_then_drains_on_sigterm(tmp_path: Path, model_dir: Path) -> None:
    """`falcon worker --host --port` (what a Kubernetes pod runs) serves /infer, its admin socket
    answers /readyz, and SIGTERM makes it exit 0 with the port closed."""
    import signal
    import time

    port = free_port()
    admin = tmp_path / "admin.sock"
    (tmp_path / "falcon.yaml").write_text("version: 1\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FALCON_")}
    env |= {
        "FALCON_HOME": str(tmp_path / "home"),
        "FALCON_MODEL_PATH": str(model_dir),
        "FALCON_SPEC_PATH": str(tmp_path / "falcon.yaml"),
        "FALCON_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "falcon_platform.cli", "worker", "--host", "127.0.0.1",
         "--port", str(port), "--admin-socket", str(admin)],
        env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        answer = httpx.post(f"http://127.0.0.1:{port}/infer", json={"text": "fine"}, timeout=10)
        assert answer.status_code == 200
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(admin))) as admin_client:
            assert admin_client.get("http://worker/readyz", timeout=5).json()["ready"] is True
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
