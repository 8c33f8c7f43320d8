"""What `falcon up` says when it cannot start, through the real CLI (issue 12).

A busy port is found before the first model is trained; staging prints the prod policy's
violations as warnings; an unreachable PostgreSQL is one line naming the variable, where it was
set and what to do (no SQLAlchemy wrapper, no documentation link, no traceback).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from falcon_platform.testing.net import free_port

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
FALCON = [sys.executable, "-m", "falcon_platform.cli"]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FALCON_")}
    return {
        **env,
        "FALCON_HOME": str(tmp_path / "home"),
        "FALCON_PORT": str(free_port()),
        "FALCON_CONTROL_PORT": str(free_port()),
        "FALCON_SPEC_PATH": str(REPO / "falcon.yaml"),
        "COLUMNS": "200",
        **extra,
    }


def _falcon(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FALCON, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_staging_up_warns_with_the_prod_policy_and_checks_the_port_before_training(
    tmp_path: Path, busy_port: int
) -> None:
    env_file = tmp_path / "staging.env"
    env_file.write_text(
        (REPO / "config" / "staging.env.example").read_text()
        + f"\nFALCON_HOST=127.0.0.1\nFALCON_PORT={busy_port}\nFALCON_HOME={tmp_path / 'home'}\n"
        + f"FALCON_SPEC_PATH={REPO / 'falcon.yaml'}\n"
    )
    env = _env(tmp_path)
    del env["FALCON_PORT"], env["FALCON_HOME"]
    done = _falcon(env, tmp_path, "up", "--env-file", str(env_file))
    assert done.returncode == 6, done.stderr
    assert "Traceback" not in done.stderr
    # the template's three placeholders, which prod would refuse (hand-listed)
    for rule in ("admin-token-default", "database-password-default", "redis-password-default"):
        assert f"warning: [{rule}]" in done.stderr
    assert "3 warning(s) for profile staging" in done.stderr
    assert f"127.0.0.1:{busy_port} is already in use" in done.stderr
    assert not (tmp_path / "home" / "models").exists()  # refused before training a model


def test_unreachable_postgresql_at_start_is_one_line_with_where_and_what(tmp_path: Path) -> None:
    closed = free_port()  # nothing listens there
    env = _env(
        tmp_path,
        FALCON_DATABASE_URL=f"postgresql://falcon:pw@127.0.0.1:{closed}/falcon",
        FALCON_MODEL_PATH=str(tmp_path / "model-never-loaded"),  # no training either way
    )
    done = _falcon(env, tmp_path, "up")
    assert done.returncode == 5, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    line = lines[0]
    assert line.startswith("error: ")
    assert f"127.0.0.1:{closed}" in line
    assert "FALCON_DATABASE_URL, from environment" in line
    assert "Connection refused" in line
    assert "`falcon db current`" in line
    assert "sqlalche.me" not in line
    assert ":pw@" not in line  # the password stays out
    # `falcon up --detach` shows the same line from the supervisor's log: why_it_exited
