"""`falcon drill` without a deployment: the list, clear refusals and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from falcon_platform.cli.main import app

FALCON = str(Path(sys.executable).parent / "falcon")


def test_list_json_names_every_drill_with_its_expectations() -> None:
    result = CliRunner().invoke(app, ["drill", "list", "--json"])
    assert result.exit_code == 0, result.output
    found = {d["name"]: d for d in json.loads(result.stdout)}
    assert {"kill-worker", "hang-worker", "memory-leak", "error-spike", "cpu-spike",
            "slow-model", "connection-flood", "redis-down", "postgres-down",
            "postgres-slow"} <= set(found)  # fmt: skip
    assert all(d["expectations"] and d["hypothesis"] for d in found.values())


def falcon(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FALCON, "drill", "run", *args], capture_output=True, text=True, cwd=tmp_path, timeout=60,
        env={"PATH": "/usr/bin:/bin", "FALCON_HOME": str(tmp_path), **env},
    )  # fmt: skip


def test_unknown_drill_exits_2_naming_the_list(tmp_path: Path) -> None:
    done = falcon(tmp_path, "kill-wroker")
    assert done.returncode == 2
    assert "no drill named 'kill-wroker'" in done.stderr
    assert "falcon drill list" in done.stderr


def test_no_deployment_is_one_clear_line_and_non_zero(tmp_path: Path) -> None:
    done = falcon(tmp_path, "kill-worker", FALCON_CONTROL_PORT="9")
    assert done.returncode != 0
    assert "no Falcon supervisor answers" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("name", ["redis-down", "postgres-slow"])
def test_store_drills_without_the_store_are_not_applicable_exit_0(
    tmp_path: Path, name: str
) -> None:
    done = falcon(tmp_path, name, "--json", FALCON_CONTROL_PORT="9")
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["status"] == "not_applicable"
    assert "not set" in body["reason"]
