"""The gate holds on every path that starts workers (issue 11, finding 7), with real processes.

The issue's attack: a prod supervisor started as the template suggests (`falcon up --env-file
prod.env`, the profile set inside the file) accepted `POST /restart` with FALCON_PROFILE=dev +
faults + DEBUG logs; its new workers ran as dev with faults and nothing was journaled. A real
PostgreSQL makes the prod configuration pass the gate honestly (no override at start).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy

from falcon_platform.testing.config import (
    TEST_ADMIN_TOKEN,
    TEST_DB_PASSWORD,
    clean_environ,
    passing_prod_env,
    write_env,
)
from falcon_platform.testing.servers import PostgresServer, running_postgres
from falcon_platform.testing.supervisor import start_supervisor, train_model

pytestmark = pytest.mark.integration

AUTH = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
ATTACK = {
    "FALCON_PROFILE": "dev",
    "FALCON_FAULTS": "error_ratio=0.5,leak_mb_per_request=1",
    "FALCON_LOG_LEVEL": "DEBUG",
}


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    with running_postgres() as server:
        url = f"postgresql://postgres@127.0.0.1:{server.port}/postgres"
        upgraded = subprocess.run(
            [sys.executable, "-m", "falcon_platform.cli", "db", "upgrade"],
            env=clean_environ({"FALCON_DATABASE_URL": url}),
            cwd=tmp_path_factory.mktemp("db-upgrade"),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
        yield server


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_model(tmp_path_factory.getbasetemp() / "gate-model-home")


def _prod_env_file(tmp_path: Path, postgres: PostgresServer, **changes: str) -> Path:
    url = f"postgresql://postgres:{TEST_DB_PASSWORD}@127.0.0.1:{postgres.port}/postgres"
    variables = passing_prod_env(FALCON_DATABASE_URL=url, FALCON_WORKERS="1", **changes)
    return write_env(tmp_path / "prod.env", variables)


def _faults_series(control_url: str) -> list[str]:
    text = httpx.get(control_url + "/metrics", timeout=10).text
    return [ln for ln in text.splitlines() if ln.startswith("falcon_faults_active{")]


def test_prod_restart_cannot_switch_profile_or_slip_faults_past_the_gate(
    tmp_path: Path, postgres: PostgresServer, model_dir: Path
) -> None:
    env_file = _prod_env_file(tmp_path, postgres)
    sup = start_supervisor(
        tmp_path, workers=1, model_dir=model_dir, args=["--env-file", str(env_file)]
    )
    try:
        before = sup.status()
        assert before["supervisor"]["profile"] == "prod"
        pid = before["workers"][0]["pid"]

        # 1. The exact request: refused (422), journaled, nothing started.
        refused = httpx.post(sup.control_url + "/restart", json={"env": ATTACK}, headers=AUTH)
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"] == "policy_violation"
        assert (
            "FALCON_PROFILE cannot change in a running prod deployment"
            in (refused.json()["detail"])
        )
        [event] = sup.events("gate_refused")
        assert event["details"]["path"] == "restart"
        assert event["details"]["env_keys"] == sorted(ATTACK)
        after = sup.status()
        assert after["supervisor"]["rolling_restart"] is None
        assert set(after["supervisor"]["releases"]) == {"r0"}
        assert after["workers"][0]["pid"] == pid

        # 2. Without the profile switch: the merged prod settings fail the policy.
        no_profile = {k: v for k, v in ATTACK.items() if k != "FALCON_PROFILE"}
        refused = httpx.post(sup.control_url + "/restart", json={"env": no_profile}, headers=AUTH)
        assert refused.status_code == 422, refused.text
        assert "[faults-enabled]" in refused.json()["detail"]
        assert "[log-level-debug]" in refused.json()["detail"]
        assert len(sup.events("gate_refused")) == 2

        # 3. The CLI path says so on stderr and exits non-zero.
        cli = sup.cli(
            "restart", "--set", "FALCON_PROFILE=dev", "--no-wait", "--env-file", str(env_file)
        )
        assert cli.returncode != 0
        assert "FALCON_PROFILE cannot change" in cli.stderr
        assert "more: `falcon events --kind gate_refused --env-file" in cli.stderr

        # 4. A deliberate drill: an override with a reason is accepted and journaled; the new
        #    workers still run the prod profile, so the faults-in-prod alert can see them.
        drill = {"FALCON_FAULTS": "latency_ms=1", "FALCON_LOG_LEVEL": "DEBUG"}
        accepted = httpx.post(
            sup.control_url + "/restart",
            json={"env": drill, "override_gate": "drill INC-2026-11-30-001", "allow_faults": True},
            headers=AUTH,
        )
        assert accepted.status_code == 202, accepted.text
        sup.wait_until(
            lambda s: bool((s["supervisor"]["rolling_restart"] or {}).get("done")),
            timeout=120,
            what="the drill release to replace the worker",
        )
        assert sup.status()["supervisor"]["rolling_restart"]["failed"] is None
        overrides = [
            e for e in sup.events("gate_override") if e["details"].get("path") == "restart"
        ]
        assert len(overrides) == 1
        details = overrides[0]["details"]
        assert details["override_reason"] == "drill INC-2026-11-30-001"
        assert [v["rule"] for v in details["violations"]] == ["log-level-debug"]
        assert [v["rule"] for v in details["warnings"]] == ["faults-enabled"]
        deadline = time.monotonic() + 20
        series: list[str] = []
        while time.monotonic() < deadline and not series:
            series = _faults_series(sup.control_url)
            time.sleep(0.3)
        assert series, "the drill worker exports falcon_faults_active"
        assert all('profile="prod"' in line for line in series), series
    finally:
        sup.stop()


def test_up_refusal_is_journaled(tmp_path: Path, postgres: PostgresServer) -> None:
    """`falcon up` refused by the gate exits 1 and leaves a `gate_refused` event behind."""
    env_file = _prod_env_file(tmp_path, postgres, FALCON_FAULTS="leak_mb_per_request=5")
    home = tmp_path / "home"
    env = clean_environ({"FALCON_HOME": str(home)})
    result = subprocess.run(
        [sys.executable, "-m", "falcon_platform.cli", "up", "--env-file", str(env_file)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "refusing to start" in result.stderr
    url = f"postgresql://postgres@127.0.0.1:{postgres.port}/postgres"
    engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sqlalchemy.text("SELECT details FROM events WHERE kind = 'gate_refused'")
            ).fetchall()
    finally:
        engine.dispose()
    assert rows, "the refusal is in the journal"
    details = rows[-1][0]
    details = details if isinstance(details, dict) else json.loads(details)
    assert details["path"] == "up"
    assert [v["rule"] for v in details["violations"]] == ["faults-enabled"]
