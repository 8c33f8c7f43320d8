"""`falcon config check|show|fingerprint|diff` as real subprocesses: exit codes and messages."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from falcon_platform.testing.config import (
    TEST_ADMIN_TOKEN,
    clean_environ,
    passing_prod_env,
    write_env,
)
from falcon_platform.testing.net import free_port

pytestmark = pytest.mark.integration

FALCON = str(Path(sys.executable).parent / "falcon")
MACHINE = ["--machine-memory-mb", "8192", "--machine-cpus", "4"]


def falcon(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FALCON, *args],
        cwd=cwd,
        env=clean_environ({"COLUMNS": "200", **(env or {})}),
        capture_output=True,
        text=True,
        timeout=60,
    )


def check_prod(tmp_path: Path, *extra: str, **changes: str) -> subprocess.CompletedProcess[str]:
    env_file = write_env(tmp_path / "prod.env", passing_prod_env(**changes))
    return falcon(tmp_path, "config", "check", "--profile", "prod", "--env-file", str(env_file),
                  *MACHINE, *extra)  # fmt: skip


def test_a_passing_prod_config_exits_0(tmp_path: Path) -> None:
    """The baseline every failing case below differs from by one variable."""
    result = check_prod(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no violations" in result.stdout
    assert "config OK for profile prod" in result.stderr


RULE_CASES = [
    ("faults-enabled", "FALCON_FAULTS", {"FALCON_FAULTS": "leak_mb_per_request=5"}),
    ("faults-invalid", "FALCON_FAULTS", {"FALCON_FAULTS": "leak=5"}),
    ("log-level-debug", "FALCON_LOG_LEVEL", {"FALCON_LOG_LEVEL": "DEBUG"}),
    ("admin-token-missing", "FALCON_ADMIN_TOKEN", {"FALCON_ADMIN_TOKEN": ""}),
    ("admin-token-default", "FALCON_ADMIN_TOKEN", {"FALCON_ADMIN_TOKEN": "change-me-admin-token"}),
    ("database-password-missing", "FALCON_DATABASE_URL", {"FALCON_DATABASE_URL": ""}),
    ("database-password-default", "FALCON_DATABASE_URL",
     {"FALCON_DATABASE_URL": "postgresql://falcon:change-me-database-password@db/falcon"}),
    ("redis-password-default", "FALCON_REDIS_URL",
     {"FALCON_REDIS_URL": "redis://:change-me-redis-password@redis:6379/0"}),
    ("redis-password-missing", "FALCON_REDIS_URL", {"FALCON_REDIS_URL": "redis://redis:6379/0"}),
    # weak secrets (issue 11, finding 8): placeholders with a twist, repeats, whitespace
    ("admin-token-default", "FALCON_ADMIN_TOKEN", {"FALCON_ADMIN_TOKEN": "change-me-admin-token-2"}),
    ("admin-token-default", "FALCON_ADMIN_TOKEN", {"FALCON_ADMIN_TOKEN": "aaaaaaaaaaaaaaaa"}),
    ("admin-token-default", "FALCON_ADMIN_TOKEN", {"FALCON_ADMIN_TOKEN": "changemechangeme"}),
    ("admin-token-default", "FALCON_ADMIN_TOKEN", {"FALCON_ADMIN_TOKEN": " " * 16}),
    ("database-password-default", "FALCON_DATABASE_URL",
     {"FALCON_DATABASE_URL": "postgresql://falcon:password123@db/falcon"}),
    ("database-password-default", "FALCON_DATABASE_URL",
     {"FALCON_DATABASE_URL": "postgresql://falcon:change%2Dme%2Ddatabase%2D7Hq4@db/falcon"}),
    ("memory-limit-missing", "FALCON_MEMORY_LIMIT_MB", {"FALCON_MEMORY_LIMIT_MB": "0"}),
    ("memory-overcommit", "FALCON_WORKERS", {"FALCON_WORKERS": "32"}),
    ("tls-incomplete", "FALCON_TLS_KEYFILE", {"FALCON_TLS_CERTFILE": "/etc/falcon/c.pem"}),
    ("bind-without-tls", "FALCON_HOST", {"FALCON_HOST": "0.0.0.0"}),
    ("request-limits", "FALCON_MAX_BODY_BYTES", {"FALCON_MAX_BODY_BYTES": "33554432"}),
    ("debug-switch", "DEBUG_MEMORY_GROWTH", {"DEBUG_MEMORY_GROWTH": "true"}),
    ("unknown-variable", "FALCON_MEMORY_LIMT_MB", {"FALCON_MEMORY_LIMT_MB": "512"}),
    ("invalid-value", "FALCON_PORT", {"FALCON_PORT": "eighty"}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("rule", "variable", "changes"), RULE_CASES, ids=[c[0] for c in RULE_CASES]
)
def test_each_rule_fails_the_check_with_exit_1(
    tmp_path: Path, rule: str, variable: str, changes: dict[str, str]
) -> None:
    """One bad variable: exit 1, the rule id, the variable, a why and a fix on stdout."""
    result = check_prod(tmp_path, **changes)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"ERROR {rule}  {variable}=" in result.stdout
    assert "why: " in result.stdout
    assert "fix: " in result.stdout
    assert f"violation(s) for profile prod: {rule}" in result.stderr


def test_every_violation_is_listed_at_once_and_secrets_never_printed(tmp_path: Path) -> None:
    token = "change-me-admin-token"
    result = check_prod(tmp_path, "--format", "json", FALCON_ADMIN_TOKEN=token,
                        FALCON_LOG_LEVEL="DEBUG", FALCON_HOST="0.0.0.0")  # fmt: skip
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert {e["rule"] for e in report["errors"]} == {
        "admin-token-default", "log-level-debug", "bind-without-tls"}  # fmt: skip
    assert token not in result.stdout + result.stderr


def test_staging_warns_where_prod_refuses(tmp_path: Path) -> None:
    env_file = write_env(tmp_path / "staging.env",
                         passing_prod_env(FALCON_PROFILE="staging", FALCON_LOG_LEVEL="DEBUG"))  # fmt: skip
    result = falcon(tmp_path, "config", "check", "--env-file", str(env_file), *MACHINE)
    assert result.returncode == 0, result.stderr
    assert "WARN  log-level-debug" in result.stdout
    assert "1 warning(s)" in result.stderr


def test_allow_faults_makes_a_prod_drill_a_warning(tmp_path: Path) -> None:
    result = check_prod(tmp_path, "--allow-faults", FALCON_FAULTS="latency_ms=20")
    assert result.returncode == 0, result.stdout
    assert "WARN  faults-enabled" in result.stdout


def test_spec_errors_are_listed_with_line_and_suggestion(tmp_path: Path) -> None:
    spec = tmp_path / "falcon.yaml"
    spec.write_text("workers:\n  memory_limit: 512\n")
    result = check_prod(tmp_path, "--spec", str(spec))
    assert result.returncode == 1
    assert "unknown key 'workers.memory_limit' (line 2); did you mean 'memory_limit_mb'?" in (
        result.stdout
    )


def test_show_redacts_secrets_and_says_where_values_came_from(tmp_path: Path) -> None:
    env_file = write_env(tmp_path / "prod.env", passing_prod_env())
    result = falcon(tmp_path, "config", "show", "--env-file", str(env_file), "--json",
                    env={"FALCON_PORT": "9123"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["profile"] == "prod"
    assert shown["settings"]["admin_token"] == {"value": "<set>", "source": str(env_file)}
    assert shown["settings"]["port"] == {"value": 9123, "source": "environment"}
    assert shown["settings"]["redis_url"]["value"] == "<unset>"
    assert TEST_ADMIN_TOKEN not in result.stdout


def test_diff_of_two_fingerprints_names_changed_keys_and_exits_1(tmp_path: Path) -> None:
    first = falcon(tmp_path, "config", "fingerprint", env={"FALCON_ADMIN_TOKEN": "a" * 20})
    (tmp_path / "old.json").write_text(first.stdout)
    second = falcon(tmp_path, "config", "fingerprint",
                    env={"FALCON_ADMIN_TOKEN": "b" * 20, "FALCON_WORKERS": "3"})  # fmt: skip
    (tmp_path / "new.json").write_text(second.stdout)

    same = falcon(tmp_path, "config", "diff", "old.json", "old.json")
    assert same.returncode == 0
    assert "no changes" in same.stdout
    changed = falcon(tmp_path, "config", "diff", "old.json", "new.json", "--json")
    assert changed.returncode == 1
    rows = json.loads(changed.stdout)["changes"]
    assert rows == [
        {"key": "admin_token", "old": "<secret>", "new": "<secret changed>"},
        {"key": "workers", "old": "null", "new": "3"},
    ]
    assert "a" * 20 not in first.stdout


@pytest.fixture
def fake_control(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A loopback HTTP server answering GET /config with a saved fingerprint (the contract
    the supervisor's control API implements)."""
    saved = tmp_path / "running.json"

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"fingerprint": json.loads(saved.read_text())}).encode()
            self.send_response(200 if self.path == "/config" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield port, saved
    server.shutdown()
    server.server_close()


def test_diff_against_the_running_config(tmp_path: Path, fake_control: tuple[int, Path]) -> None:
    """With one file, the running supervisor's GET /config is the old side."""
    port, saved = fake_control
    control = {"FALCON_CONTROL_PORT": str(port)}
    saved.write_text(falcon(tmp_path, "config", "fingerprint", env=control).stdout)
    candidate = write_env(tmp_path / "next.env", {"FALCON_LOG_LEVEL": "WARNING"})

    result = falcon(tmp_path, "config", "diff", str(candidate), env=control)
    assert result.returncode == 1, result.stderr
    assert "running" in result.stdout
    assert "log_level" in result.stdout
    unchanged = falcon(tmp_path, "config", "diff", env=control)
    assert unchanged.returncode == 0, unchanged.stdout + unchanged.stderr


def test_diff_without_a_supervisor_falls_back_to_the_effective_settings(tmp_path: Path) -> None:
    control = {"FALCON_CONTROL_PORT": str(free_port())}
    candidate = write_env(tmp_path / "next.env", {"FALCON_QUEUE_MAX": "99"})
    result = falcon(tmp_path, "config", "diff", str(candidate), env=control)
    assert result.returncode == 1
    assert "comparing against the effective settings" in result.stderr
    assert "queue_max" in result.stdout
    alone = falcon(tmp_path, "config", "diff", env=control)
    assert alone.returncode == 6  # SupervisorUnreachableError
    assert "no running supervisor" in alone.stderr
