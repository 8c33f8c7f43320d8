"""The falcon-config-lint rules as functions (the real pre-commit run is an integration test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from falcon_platform.config.lint import lint_paths, main

REPO = Path(__file__).resolve().parents[2]


def rules(tmp_path: Path, name: str, text: str) -> list[tuple[int, str]]:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return [(f.line, f.rule) for f in lint_paths([path])]


def test_the_seed_prod_env_is_refused(tmp_path: Path) -> None:
    text = "FALCON_LOG_LEVEL=INFO\nDEBUG_MEMORY_GROWTH=true\nFALCON_FAULTS=leak_mb_per_request=5\n"
    assert rules(tmp_path, "deploy/prod.env", text) == [(2, "debug-switch"), (3, "faults-enabled")]


def test_profile_inside_the_file_makes_it_strict(tmp_path: Path) -> None:
    text = "FALCON_PROFILE=staging\nFALCON_LOG_LEVEL=debug\n"
    assert rules(tmp_path, ".env", text) == [(2, "log-level-debug")]
    assert rules(tmp_path, "dev/.env", "FALCON_LOG_LEVEL=debug\nAPP_DEBUG=1\n") == []


def test_secrets_placeholder_real_and_in_templates(tmp_path: Path) -> None:
    text = ("FALCON_ADMIN_TOKEN=change-me-admin-token\n"
            "FALCON_DATABASE_URL=postgresql://u:s3cret-real-pw@db/f\n"
            "FALCON_REDIS_URL=redis://redis:6379/0\n")  # fmt: skip
    assert rules(tmp_path, "prod.env", text) == [(1, "template-secret"), (2, "committed-secret")]
    example = "FALCON_ADMIN_TOKEN=a-real-looking-token-1234567\nFALCON_FAULTS=\n"
    assert rules(tmp_path, "config/prod.env.example", example) == [(1, "secret-in-template")]


def test_switches_that_are_off_pass(tmp_path: Path) -> None:
    text = "FALCON_PROFILE=prod\nDEBUG_MEMORY_GROWTH=false\nFALCON_FAULTS=\nAPP_DEBUG=0\n"
    assert rules(tmp_path, "prod.env", text) == []


def test_code_reading_a_switch_outside_chaos_is_refused(tmp_path: Path) -> None:
    code = (
        "import os\nfrom os import environ, getenv\n"
        "a = os.environ.get('DEBUG_MEMORY_GROWTH')\n"
        "b = os.environ['FALCON_CHAOS']\n"
        "c = getenv('LEAK_MB')\n"
        "d = 'DEBUG' in environ\n"
        "e = os.environ.get('FALCON_PORT')\n"
        "f = os.getenv('FALCON_FAULTS')\n"
        "g = os.getenv('APP_DEBUG')  # falcon-lint: allow vendored shim\n"
        "class S(BaseSettings):\n    debug_memory_growth: bool = False\n    faults: str = ''\n"
    )
    found = rules(tmp_path, "pkg/mod.py", code)
    assert found == [(3, "switch-read"), (4, "switch-read"), (5, "switch-read"),
                     (6, "switch-read"), (8, "switch-read"), (11, "switch-read")]  # fmt: skip
    assert rules(tmp_path, "src/falcon_platform/chaos/x.py", code) == []


def test_the_repository_itself_is_clean() -> None:
    """Templates, the package and the tests pass their own hook."""
    files = [*(REPO / "config").iterdir(), *(REPO / "src").rglob("*.py")]
    assert [f.render() for f in lint_paths(files)] == []


def test_main_prints_findings_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "prod.env"
    bad.write_text("DEBUG=1\n")
    assert main([str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:1: [debug-switch] DEBUG=1" in err
    assert "fix: delete DEBUG" in err
    assert main([str(REPO / "config" / "dev.env")]) == 0
