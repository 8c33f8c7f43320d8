"""Settings layering: defaults < config/<profile>.env < .env < environment < overrides."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from falcon_platform.config.settings import load_settings, try_load_settings
from falcon_platform.errors import ConfigError
from falcon_platform.testing.config import scrub_falcon_env, write_env


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory with no FALCON_* variables in the environment."""
    scrub_falcon_env(monkeypatch)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config").mkdir()
    return tmp_path


def test_each_layer_overrides_the_one_below(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """port from the profile file, workers from .env over it, log level from the environment
    over both, and an explicit override over everything; sources say where each came from."""
    write_env(
        workdir / "config" / "dev.env",
        {"FALCON_PORT": "9100", "FALCON_WORKERS": "3", "FALCON_LOG_LEVEL": "WARNING",
         "FALCON_QUEUE_MAX": "100"},
    )  # fmt: skip
    write_env(workdir / ".env", {"FALCON_WORKERS": "5", "FALCON_LOG_LEVEL": "ERROR",
                                 "FALCON_QUEUE_MAX": "200"})  # fmt: skip
    monkeypatch.setenv("FALCON_LOG_LEVEL", "info")
    monkeypatch.setenv("FALCON_QUEUE_MAX", "300")

    settings = load_settings(queue_max=400)

    assert settings.port == 9100
    assert settings.workers == 5
    assert settings.log_level == "INFO"
    assert settings.queue_max == 400
    assert settings.batch_max_size == 64  # untouched default
    assert settings.sources["port"] == str(workdir / "config" / "dev.env")
    assert settings.sources["workers"] == str(workdir / ".env")
    assert settings.sources["log_level"] == "environment"
    assert settings.sources["queue_max"] == "override"
    assert settings.sources["batch_max_size"] == "default"


def test_env_file_replaces_dot_env(workdir: Path) -> None:
    """--env-file is read instead of ./.env, not in addition to it."""
    write_env(workdir / ".env", {"FALCON_PORT": "9001"})
    other = write_env(workdir / "other.env", {"FALCON_CONTROL_PORT": "9002"})
    settings = load_settings(env_file=other)
    assert settings.port == 8000
    assert settings.control_port == 9002


def test_profile_selects_its_file(workdir: Path) -> None:
    """--profile staging reads config/staging.env, not dev.env; the file's FALCON_PROFILE
    cannot switch the profile it was chosen for."""
    write_env(workdir / "config" / "dev.env", {"FALCON_PORT": "9001"})
    write_env(workdir / "config" / "staging.env", {"FALCON_PORT": "9002",
                                                   "FALCON_PROFILE": "dev"})  # fmt: skip
    settings = load_settings(profile="staging")
    assert (settings.profile, settings.port) == ("staging", 9002)


def test_profile_from_dot_env_chooses_the_profile_file(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FALCON_PROFILE in .env picks config/<profile>.env; the environment wins over .env."""
    write_env(workdir / ".env", {"FALCON_PROFILE": "staging"})
    write_env(workdir / "config" / "staging.env", {"FALCON_PORT": "9002"})
    write_env(workdir / "config" / "prod.env", {"FALCON_PORT": "9003"})
    assert load_settings().port == 9002
    monkeypatch.setenv("FALCON_PROFILE", "prod")
    assert load_settings().port == 9003


def test_unknown_variable_in_a_file_names_it_and_suggests(workdir: Path) -> None:
    """A typo in an env file is an error that names the variable, the file and the fix."""
    write_env(workdir / ".env", {"FALCON_MEMORY_LIMT_MB": "512"})
    with pytest.raises(ConfigError, match=r"FALCON_MEMORY_LIMT_MB.*FALCON_MEMORY_LIMIT_MB"):
        load_settings()


def test_every_bad_value_is_reported_and_secrets_are_redacted(workdir: Path) -> None:
    """All invalid variables come back at once; a secret's value never appears."""
    write_env(workdir / ".env", {"FALCON_PORT": "eighty", "FALCON_WORKERS": "0"})
    settings, problems = try_load_settings(admin_token=12345)
    assert settings is None
    by_name = {p.variable: p for p in problems}
    assert set(by_name) == {"FALCON_PORT", "FALCON_WORKERS", "FALCON_ADMIN_TOKEN"}
    assert by_name["FALCON_PORT"].value == "'eighty'"
    assert by_name["FALCON_ADMIN_TOKEN"].value == "<redacted>"
    assert "12345" not in " ".join(p.message() for p in problems)


def test_missing_env_file_and_unknown_profile_are_errors(workdir: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(env_file=workdir / "nope.env")
    with pytest.raises(ConfigError, match="dev, staging, prod"):
        load_settings(profile="production")


def test_debug_switches_are_recorded_from_files_and_environment(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DEBUG_MEMORY_GROWTH=true (the seed) is seen in .env; in the environment only names
    that are Falcon's or start with the switch word count (not NVPL_BLAS_DEBUG_...)."""
    write_env(workdir / ".env", {"DEBUG_MEMORY_GROWTH": "true", "APP_DEBUG": "0"})
    monkeypatch.setenv("CHAOS_MODE", "on")
    monkeypatch.setenv("VENDOR_LIB_DEBUG_LEVEL", "1")
    switches = load_settings().debug_switches
    assert set(switches) == {"DEBUG_MEMORY_GROWTH", "CHAOS_MODE"}
    assert switches["DEBUG_MEMORY_GROWTH"].startswith("true (")


def test_nothing_reads_the_environment_at_import_time() -> None:
    """Importing the config and chaos packages with broken FALCON_* values does not fail."""
    code = (
        "import falcon_platform.config.settings, falcon_platform.config.gate, "
        "falcon_platform.chaos.faults, falcon_platform.cli.main"
    )
    env = {"FALCON_PORT": "not-a-port", "FALCON_FAULTS": "bogus", "PATH": "/usr/bin"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
