"""The env templates: dev works as is, prod/staging fail only on their placeholders."""

from __future__ import annotations

from pathlib import Path

import pytest

from falcon_platform.config.machine import MachineFacts
from falcon_platform.config.policy import TEMPLATE_SECRETS, evaluate_policy
from falcon_platform.config.profiles import read_env_file
from falcon_platform.config.settings import Settings, load_settings
from falcon_platform.config.spec import Spec
from falcon_platform.testing.config import TEST_ADMIN_TOKEN, TEST_DB_PASSWORD, scrub_falcon_env

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "config"
TEMPLATES = ["dev.env", "staging.env.example", "prod.env.example"]
MACHINE = MachineFacts(memory_mb=8192, cpu_count=4)


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    scrub_falcon_env(monkeypatch)
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("name", TEMPLATES)
def test_every_variable_is_a_setting_and_has_a_comment_above(name: str) -> None:
    lines = (CONFIG / name).read_text().splitlines()
    for number, line in enumerate(lines):
        if not line.strip() or line.startswith("#"):
            continue
        variable = line.split("=", 1)[0]
        assert variable.removeprefix("FALCON_").lower() in Settings.model_fields, variable
        above = next(p for p in reversed(lines[:number]) if not p.startswith("FALCON_"))
        assert above.startswith("#"), f"{name}: {variable} has no comment above it"


def test_dev_template_works_as_is_and_equals_the_defaults() -> None:
    """Loading config/dev.env changes nothing, so its presence cannot surprise a test."""
    settings = load_settings(profile="dev", env_file=CONFIG / "dev.env")
    assert settings.model_dump() == Settings(_env_file=None).model_dump()


@pytest.mark.parametrize("name", ["staging.env.example", "prod.env.example"])
def test_placeholder_secrets_are_all_known_template_defaults(name: str) -> None:
    """The gate and the lint hook recognise every placeholder these files ship."""
    values = read_env_file(CONFIG / name)
    assert values["FALCON_ADMIN_TOKEN"] in TEMPLATE_SECRETS
    for url in ("FALCON_DATABASE_URL", "FALCON_REDIS_URL"):
        password = values[url].split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
        assert password in TEMPLATE_SECRETS


@pytest.mark.parametrize(("name", "profile"), [("prod.env.example", "prod"),
                                               ("staging.env.example", "staging")])  # fmt: skip
def test_templates_fail_only_on_placeholders_until_filled_in(name: str, profile: str) -> None:
    settings = load_settings(env_file=CONFIG / name)
    assert settings.profile == profile
    found = evaluate_policy(settings, Spec(), MACHINE, allow_faults=False)
    assert sorted(v.rule for v in found) == [
        "admin-token-default", "database-password-default", "redis-password-default"]  # fmt: skip
    filled = load_settings(
        env_file=CONFIG / name,
        admin_token=TEST_ADMIN_TOKEN,
        database_url=f"postgresql://falcon:{TEST_DB_PASSWORD}@db/falcon",
        redis_url=f"redis://:{TEST_DB_PASSWORD}@redis:6379/0",
    )
    assert evaluate_policy(filled, Spec(), MACHINE, allow_faults=False) == []


def test_config_check_reports_a_missing_spec_and_every_placeholder_at_once() -> None:
    """The prod template names /etc/falcon/falcon.yaml, absent here: that error must not hide
    the three placeholder secrets (issue 12: every violation at once)."""
    from falcon_platform.config.gate import check_config

    report = check_config(
        profile="prod",
        env_file=CONFIG / "prod.env.example",
        spec_path=None,
        machine=MACHINE,
    )
    assert sorted(v.rule for v in report.errors) == [
        "admin-token-default", "database-password-default", "redis-password-default",
        "spec-invalid"]  # fmt: skip
