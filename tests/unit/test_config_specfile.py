"""falcon.yaml: the shipped default is exactly Spec(); errors name the key, line and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from falcon_platform.config.spec import Spec
from falcon_platform.config.spec_template import render_spec_template
from falcon_platform.config.specfile import load_spec, parse_spec_text
from falcon_platform.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_shipped_falcon_yaml_parses_to_exactly_the_default_spec() -> None:
    assert load_spec(REPO / "falcon.yaml") == Spec()


def test_shipped_falcon_yaml_is_the_rendered_template() -> None:
    """Every section and field of config/spec.py is in the file, commented; regenerate with
    `falcon config template > falcon.yaml` after changing the spec model."""
    assert (REPO / "falcon.yaml").read_text() == render_spec_template(), (
        "falcon.yaml is stale: run `falcon config template > falcon.yaml`"
    )


def test_missing_default_file_gives_defaults_but_an_explicit_path_must_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_spec(None) == Spec()
    assert load_spec(Path("falcon.yaml")) == Spec()  # FALCON_SPEC_PATH's default
    with pytest.raises(ConfigError, match="does not exist"):
        load_spec(tmp_path / "missing.yaml")


def test_unknown_keys_suggest_the_closest_valid_key_with_the_line() -> None:
    spec, problems = parse_spec_text("slo:\n  availabilty: 0.99\ncanary:\n  steps:\n"
                                     "    - {weight: 10, paus: 5}\nsloo: {}\n")  # fmt: skip
    assert spec is None
    assert problems == [
        "unknown key 'slo.availabilty' (line 2); did you mean 'availability'?",
        "unknown key 'canary.steps.0.paus' (line 5); did you mean 'pause'?",
        "unknown key 'sloo' (line 6); did you mean 'slo'?",
    ]


def test_yaml_errors_carry_the_line_number(tmp_path: Path) -> None:
    bad = tmp_path / "falcon.yaml"
    bad.write_text("slo:\n  availability: 0.99\n   window: 30d\n")
    with pytest.raises(ConfigError, match=r"invalid YAML at line 3"):
        load_spec(bad)


def test_values_are_validated_with_the_key_and_line() -> None:
    _, problems = parse_spec_text("workers:\n  memory_limit_mb: -5\n")
    assert problems == ["workers.memory_limit_mb (line 2): Input should be greater than or "
                        "equal to 0 (got -5)"]  # fmt: skip
    _, top = parse_spec_text("- 1\n")
    assert "top level must be a mapping" in top[0]
