"""The falcon-config-lint hook through the real `pre-commit` tool in a throwaway git repo.

Offline: the repository's own `.pre-commit-config.yaml` (`repo: local`, `language: system`)
runs `.venv/bin/python -m falcon_platform.config.lint`; the temporary repository gets a
`.venv` symlink to this interpreter's venv, so nothing is downloaded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from falcon_platform.testing.config import clean_environ

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
VENV = Path(sys.executable).parent.parent
PRE_COMMIT = str(Path(sys.executable).parent / "pre-commit")


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A fresh git repository using Falcon's own pre-commit config, hook installed."""
    work = tmp_path / "repo"
    work.mkdir()
    env = {k: v for k, v in clean_environ().items() if not k.startswith("GIT_")}
    env.update(
        HOME=str(tmp_path),
        PRE_COMMIT_HOME=str(tmp_path / "pre-commit-cache"),
        GIT_AUTHOR_NAME="Falcon Test",
        GIT_AUTHOR_EMAIL="test@falcon.invalid",
        GIT_COMMITTER_NAME="Falcon Test",
        GIT_COMMITTER_EMAIL="test@falcon.invalid",
        GIT_CONFIG_NOSYSTEM="1",
    )
    shutil.copy(REPO / ".pre-commit-config.yaml", work / ".pre-commit-config.yaml")
    (work / ".venv").symlink_to(VENV)
    (work / ".gitignore").write_text(".venv\n")
    git(work, env, "init", "-q", "-b", "main")
    git(work, env, "add", ".pre-commit-config.yaml", ".gitignore")
    subprocess.run([PRE_COMMIT, "install"], cwd=work, env=env, check=True, capture_output=True)
    return work, env


def git(work: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], cwd=work, env=env, capture_output=True, text=True, timeout=120
    )


def commit(
    work: Path, env: dict[str, str], files: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    for name, text in files.items():
        path = work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        git(work, env, "add", name)
    return git(work, env, "commit", "-m", "change")


def test_the_seed_prod_env_is_refused_with_a_readable_message(
    repo: tuple[Path, dict[str, str]],
) -> None:
    work, env = repo
    result = commit(
        work, env, {"deploy/prod.env": "FALCON_LOG_LEVEL=INFO\nDEBUG_MEMORY_GROWTH=true\n"}
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "falcon config lint" in output
    assert "Failed" in output
    assert "deploy/prod.env:2: [debug-switch] DEBUG_MEMORY_GROWTH=true" in output
    assert "fix: delete DEBUG_MEMORY_GROWTH" in output
    assert git(work, env, "rev-parse", "--verify", "HEAD").returncode != 0  # nothing committed


def test_code_reading_a_debug_switch_is_refused(repo: tuple[Path, dict[str, str]]) -> None:
    work, env = repo
    code = "import os\n\nLEAK = os.environ.get('FALCON_DEBUG_LEAK', '')\n"
    result = commit(work, env, {"src/app/handlers.py": code})
    assert result.returncode != 0
    assert "src/app/handlers.py:3: [switch-read]" in result.stdout + result.stderr


def test_a_good_commit_passes(repo: tuple[Path, dict[str, str]]) -> None:
    work, env = repo
    files = {
        "config/prod.env.example": (REPO / "config" / "prod.env.example").read_text(),
        "deploy/prod.env": "FALCON_PROFILE=prod\nFALCON_LOG_LEVEL=INFO\nFALCON_FAULTS=\n",
        "src/app/handlers.py": "import os\n\nPORT = os.environ.get('FALCON_PORT')\n",
    }
    result = commit(work, env, files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Passed" in result.stdout + result.stderr
    assert git(work, env, "rev-parse", "--verify", "HEAD").returncode == 0


def test_the_hook_manifest_is_valid(tmp_path: Path) -> None:
    """`.pre-commit-hooks.yaml` (for other repositories) passes pre-commit's own validation."""
    result = subprocess.run(
        [PRE_COMMIT, "validate-manifest", str(REPO / ".pre-commit-hooks.yaml")],
        capture_output=True, text=True, env={**os.environ, "PRE_COMMIT_HOME": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
