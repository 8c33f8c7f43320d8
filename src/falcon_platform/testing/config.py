"""Helpers for configuration tests: a clean environment and a prod config that passes.

::

    scrub_falcon_env(monkeypatch)              # no FALCON_* or debug switch leaks in
    write_env(tmp_path / "prod.env", passing_prod_env(FALCON_LOG_LEVEL="DEBUG"))
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from falcon_platform.config.switches import is_switch_name

# Secrets for tests only; long and not placeholders, so the gate accepts them.
TEST_ADMIN_TOKEN = "test-admin-token-3f9c1d7e5b2a4c6e"  # noqa: S105
TEST_DB_PASSWORD = "test-db-pw-9b8c7d6e5f4a"  # noqa: S105


class _MonkeyPatch(Protocol):
    def delenv(self, name: str, raising: bool = ...) -> None: ...


def scrub_falcon_env(monkeypatch: _MonkeyPatch) -> None:
    """Remove every FALCON_* variable and debug switch from this test's environment."""
    for name in list(os.environ):
        if name.upper().startswith("FALCON_") or is_switch_name(name, anchored=True):
            monkeypatch.delenv(name, raising=False)


def clean_environ(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """``os.environ`` without FALCON_* and debug switches, plus ``extra`` (for subprocesses)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.upper().startswith("FALCON_") or is_switch_name(k, anchored=True))
    }
    env.update(extra or {})
    return env


def passing_prod_env(**changes: str) -> dict[str, str]:
    """Variables of a prod configuration that passes every rule; ``changes`` override.

    Give a value of ``""`` to drop a variable.
    """
    env = {
        "FALCON_PROFILE": "prod",
        "FALCON_HOST": "127.0.0.1",
        "FALCON_CONTROL_HOST": "127.0.0.1",
        "FALCON_ADMIN_TOKEN": TEST_ADMIN_TOKEN,
        "FALCON_DATABASE_URL": f"postgresql://falcon:{TEST_DB_PASSWORD}@127.0.0.1:5432/falcon",
        "FALCON_WORKERS": "2",
        "FALCON_MEMORY_LIMIT_MB": "512",
        "FALCON_LOG_LEVEL": "INFO",
    }
    env.update(changes)
    return {k: v for k, v in env.items() if v != ""}


def write_env(path: Path, variables: Mapping[str, str]) -> Path:
    """Write ``variables`` as a dotenv file (values single-quoted) and return the path."""
    lines = [f"{k}='{v}'" for k, v in variables.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
