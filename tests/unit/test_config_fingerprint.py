"""Fingerprints: change detection by key, secrets by name only, stable across workers."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from falcon_platform.config.fingerprint import (
    Fingerprint,
    describe_changes,
    diff_fingerprints,
    fingerprint,
    load_or_create_salt,
)
from falcon_platform.config.settings import Settings, load_settings
from falcon_platform.config.spec import Spec
from falcon_platform.observability.config_info import register_config_info
from falcon_platform.testing.config import scrub_falcon_env


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    scrub_falcon_env(monkeypatch)
    monkeypatch.chdir(tmp_path)


def s(**values: object) -> Settings:
    return load_settings(**values)


def test_same_config_same_digest_and_worker_identity_is_ignored() -> None:
    # The same configuration said two ways (defaults vs. the same values spelled out, a spec
    # from YAML-like data vs. the default object) has one digest, a SHA-256 in hex.
    default = fingerprint(s(), Spec())
    spelled = fingerprint(
        s(log_level=s().log_level, workers=s().workers),
        Spec.model_validate(Spec().model_dump(mode="json")),
    )
    assert spelled.digest == default.digest
    assert len(default.digest) == 64
    assert int(default.digest, 16) >= 0
    a = fingerprint(s(worker_id="w1", release="r1"), Spec())
    b = fingerprint(s(worker_id="w2", release="r1"), Spec())
    assert a.digest == b.digest


def test_changed_settings_and_spec_keys_are_listed() -> None:
    old = fingerprint(s(), Spec())
    new = fingerprint(s(log_level="WARNING", workers=3),
                      Spec.model_validate({"workers": {"memory_limit_mb": 256}}))  # fmt: skip
    assert old.digest != new.digest
    assert diff_fingerprints(old, new) == ["log_level", "spec.workers.memory_limit_mb", "workers"]
    assert diff_fingerprints(new, new) == []


def test_a_changed_secret_is_detected_by_name_without_exposing_it() -> None:
    old = fingerprint(s(admin_token="first-secret-value-123"), Spec())
    new = fingerprint(s(admin_token="second-secret-value-456"), Spec())
    assert diff_fingerprints(old, new) == ["admin_token"]
    text = json.dumps(old.to_dict()) + json.dumps(new.to_dict())
    assert "secret-value" not in text
    rows = describe_changes(old, new)
    assert rows == [{"key": "admin_token", "old": "<secret>", "new": "<secret changed>"}]
    unset = fingerprint(s(), Spec())
    assert unset.values["admin_token"] == "unset"
    assert old.values["admin_token"].startswith("set:")


def test_salt_changes_secret_markers_and_is_created_once_private(tmp_path: Path) -> None:
    salt = load_or_create_salt(tmp_path / "run")
    assert load_or_create_salt(tmp_path / "run") == salt
    assert stat.S_IMODE((tmp_path / "run" / "fingerprint.salt").stat().st_mode) == 0o600
    settings = s(admin_token="same-secret-value-123")
    assert (fingerprint(settings, Spec(), salt=salt).values["admin_token"]
            != fingerprint(settings, Spec()).values["admin_token"])  # fmt: skip


def test_round_trip_through_json_and_the_wrapped_form() -> None:
    fp = fingerprint(s(log_level="ERROR"), Spec())
    again = Fingerprint.from_dict(json.loads(json.dumps(fp.to_dict())))
    assert again == fp
    assert Fingerprint.from_dict({"fingerprint": fp.to_dict()}) == fp


def test_config_info_metric_carries_fingerprint_and_profile() -> None:
    registry = CollectorRegistry()
    fp = fingerprint(s(profile="staging"), Spec())
    register_config_info(registry, fp, labels={"worker": "w1", "release": "r1"})
    text = generate_latest(registry).decode()
    [family] = text_string_to_metric_families(text)
    assert family.name == "falcon_config_info"
    [sample] = family.samples
    assert sample.value == 1
    assert sample.labels == {"worker": "w1", "release": "r1", "fingerprint": fp.short,
                             "profile": "staging"}  # fmt: skip
