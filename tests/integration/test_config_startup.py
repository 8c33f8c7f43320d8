"""The gate at start: `falcon up` / `falcon worker` refuse a failing prod config, the override
starts anyway and is journalled, faults need --allow-faults and are visible, and a config
change between starts is recorded with the changed keys."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from falcon_platform.testing.config import clean_environ, passing_prod_env, write_env
from falcon_platform.testing.net import free_port
from falcon_platform.testing.supervisor import start_supervisor, train_model

pytestmark = pytest.mark.integration


def runtime(tmp_path: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = clean_environ({
        "FALCON_HOME": str(tmp_path / "home"),
        "FALCON_PORT": str(free_port()),
        "FALCON_CONTROL_PORT": str(free_port()),
        **env,
    })  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "falcon_platform.cli", *args],
        cwd=tmp_path, env=full, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_up_refuses_a_failing_prod_config_naming_every_violation(tmp_path: Path) -> None:
    env = passing_prod_env(FALCON_LOG_LEVEL="DEBUG", FALCON_MAX_BODY_BYTES="33554432")
    result = runtime(tmp_path, "up", "--workers", "1", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "refusing to start" in result.stderr
    assert "[log-level-debug] FALCON_LOG_LEVEL=DEBUG" in result.stderr
    assert "[request-limits] FALCON_MAX_BODY_BYTES=33554432" in result.stderr
    assert "--override-gate" in result.stderr
    assert not (tmp_path / "home" / "run" / "supervisor.json").exists()


def test_the_seed_prod_env_file_is_stopped_at_start(tmp_path: Path) -> None:
    """The seed incident: DEBUG_MEMORY_GROWTH=true in the production env file."""
    env_file = write_env(
        tmp_path / "prod.env", {**passing_prod_env(), "DEBUG_MEMORY_GROWTH": "true"}
    )
    result = runtime(tmp_path, "up", "--workers", "1", "--env-file", str(env_file), env={})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "[debug-switch] DEBUG_MEMORY_GROWTH=true" in result.stderr


def test_faults_from_the_environment_alone_never_start_in_prod(tmp_path: Path) -> None:
    """FALCON_FAULTS in a prod environment: `up` and a lone `falcon worker` both refuse."""
    env = passing_prod_env(FALCON_FAULTS="leak_mb_per_request=5")
    up = runtime(tmp_path, "up", "--workers", "1", env=env)
    assert up.returncode == 1
    assert "[faults-enabled] FALCON_FAULTS='leak_mb_per_request=5'" in up.stderr
    worker = runtime(tmp_path, "worker", env=env)
    assert worker.returncode == 78, worker.stderr  # boot failure: do not retry in a loop
    assert "faults-enabled" in worker.stderr


@pytest.mark.slow
def test_override_is_journalled_faults_are_visible_and_config_changes_recorded(
    tmp_path: Path,
) -> None:
    model_dir = train_model(tmp_path / "model-home")
    # prod without admin token and database: two violations, overridden with a reason
    env = passing_prod_env(FALCON_ADMIN_TOKEN="", FALCON_DATABASE_URL="", FALCON_WORKERS="1",
                           FALCON_FAULTS="latency_ms=1")  # fmt: skip
    args = ["--override-gate", "drill INC-2026-01-01-001", "--allow-faults"]
    sup = start_supervisor(tmp_path, workers=1, spec_yaml="{}\n", model_dir=model_dir, env=env,
                           args=args, ready_timeout=180)  # fmt: skip
    try:
        [override] = sup.events("gate_override")
        details = override["details"]
        assert details["override_reason"] == "drill INC-2026-01-01-001"
        assert {v["rule"] for v in details["violations"]} == {
            "admin-token-missing", "database-password-missing"}  # fmt: skip
        assert [w["rule"] for w in details["warnings"]] == ["faults-enabled"]
        assert "CONFIG GATE OVERRIDDEN" in sup.log_tail(200)
        assert len(sup.events("settings_fingerprint")) == 1

        response = httpx.post(sup.url + "/infer", json={"text": "great"}, timeout=10)
        assert response.status_code == 200, response.text
        assert response.headers["falcon-faults"] == "latency_ms=1"
        active = _faults_gauge(sup.control_url)
        assert active == {"latency_ms": 1.0}

        # `falcon config diff` reads the running fingerprint from the real control API
        same = sup.cli("config", "diff")
        assert same.returncode == 0, same.stdout + same.stderr
        assert "no changes (running = effective" in same.stdout
        candidate = write_env(tmp_path / "next.env", {"FALCON_QUEUE_MAX": "99"})
        changed = sup.cli("config", "diff", str(candidate), "--json")
        assert changed.returncode == 1, changed.stderr
        assert [c["key"] for c in json.loads(changed.stdout)["changes"]] == ["queue_max"]
    finally:
        assert sup.stop() == 0

    env["FALCON_MAX_TEXT_CHARS"] = "5000"
    sup = start_supervisor(tmp_path, workers=1, spec_yaml="{}\n", model_dir=model_dir, env=env,
                           args=args, ready_timeout=180)  # fmt: skip
    try:
        [changed] = sup.events("config_changed")
        keys = [c["key"] for c in changed["details"]["changes"]]
        assert "max_text_chars" in keys
        assert "control_port" in keys  # a new free port each start: also a change
    finally:
        sup.stop()


def _faults_gauge(control_url: str) -> dict[str, float]:
    """falcon_faults_active by fault from the supervisor's aggregated /metrics (scraped ~1 s)."""
    deadline = time.monotonic() + 30
    found: dict[str, float] = {}
    while time.monotonic() < deadline and not found:
        text = httpx.get(control_url + "/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            if family.name == "falcon_faults_active":
                found = {s.labels["fault"]: s.value for s in family.samples}
        time.sleep(0.2)
    return found
