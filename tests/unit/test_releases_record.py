"""Release records (pure) and their store (the migrated SQLite schema)."""

from __future__ import annotations

from pathlib import Path

import pytest

from falcon_platform.config.settings import Settings
from falcon_platform.releases.record import (
    ReleaseRecord,
    ReleaseState,
    inherited_changes,
    masked_env,
    next_release_id,
    release_number,
    restore_env,
    restore_problems,
    settings_diff,
    spec_hash,
    with_gate,
    with_state,
    with_step,
)
from falcon_platform.releases.store import ReleaseStore
from falcon_platform.stores import database


def _record(release_id: str = "r1", **kw: object) -> ReleaseRecord:
    values: dict[str, object] = {
        "id": release_id,
        "number": release_number(release_id) or 0,
        "created_at": 1000.0,
        "created_by": "ana@host",
        "reason": "raise the batch size",
        "model_sha256": "a" * 64,
        "settings_fingerprint": "f" * 64,
        "spec_hash": "s" * 64,
    }
    values.update(kw)
    return ReleaseRecord(**values)  # type: ignore[arg-type]


def test_release_ids_number_on_from_the_highest_taken() -> None:
    assert next_release_id([]) == "r1"
    assert next_release_id(["r0"]) == "r1"
    assert next_release_id(["r0", "r9", "r10", "blue", "rx"]) == "r11"
    assert release_number("r12") == 12
    assert release_number("blue") is None


def test_settings_diff_names_changed_keys_and_never_shows_a_secret() -> None:
    old = {"log_level": '"INFO"', "admin_token": "set:0123456789ab", "workers": "2"}
    new = {
        "log_level": '"DEBUG"',
        "admin_token": "set:ba9876543210",
        "workers": "2",
        "faults": '"leak_mb_per_request=5"',
    }
    rows = settings_diff(old, new)
    assert rows == [
        {"key": "admin_token", "old": "<secret>", "new": "changed"},
        {"key": "faults", "old": "-", "new": '"leak_mb_per_request=5"'},
        {"key": "log_level", "old": '"INFO"', "new": '"DEBUG"'},
    ]
    assert "0123456789ab" not in str(rows)
    assert "ba9876543210" not in str(rows)
    assert settings_diff(old, old) == []


def test_masked_env_hides_secret_values_only() -> None:
    env = {"FALCON_ADMIN_TOKEN": "hunter2-hunter2", "FALCON_LOG_LEVEL": "DEBUG"}
    assert masked_env(env) == {"FALCON_ADMIN_TOKEN": "<secret>", "FALCON_LOG_LEVEL": "DEBUG"}


def test_spec_hash_ignores_key_order() -> None:
    assert spec_hash('{"a": 1, "b": 2}') == spec_hash('{"b":2,"a":1}')
    assert spec_hash('{"a": 1}') != spec_hash('{"a": 2}')


def test_state_moves_follow_the_table_and_are_kept_in_history() -> None:
    record = _record()
    canary = with_state(record, ReleaseState.CANARY, why="gate passed", now=1001.0)
    stable = with_state(canary, ReleaseState.STABLE, why="promoted", now=1002.0)
    assert [h["state"] for h in stable.history] == ["canary", "stable"]
    assert stable.updated_at == 1002.0
    assert with_state(stable, ReleaseState.STABLE, why="again", now=1003.0) is stable
    with pytest.raises(ValueError, match="cannot move from stable to canary"):
        with_state(stable, ReleaseState.CANARY, why="no", now=1004.0)
    refused = with_state(record, ReleaseState.REFUSED, why="leak", now=1001.0)
    with pytest.raises(ValueError, match="from refused to canary"):
        with_state(refused, ReleaseState.CANARY, why="no", now=1002.0)


def test_store_round_trips_records_through_the_migrated_schema(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    database.upgrade(settings)
    engine = database.make_engine(settings)
    try:
        store = ReleaseStore(engine)
        assert store.all() == []
        assert store.get("r1") is None
        r1 = with_gate(
            _record("r1", state=ReleaseState.STABLE),
            {"verdict": "passed", "checks": []},
            now=1001.0,
        )
        store.put(r1)
        r2 = with_step(
            _record("r2", env={"FALCON_LOG_LEVEL": "DEBUG"}, from_release="r1"),
            {"step": 1, "verdict": "fail", "reasons": ["error ratio 0.2 > 0.1"]},
            now=1002.0,
        )
        store.put(r2)
        store.put(with_state(r1, ReleaseState.SUPERSEDED, why="r2 promoted", now=1003.0))
        assert [r.id for r in store.all()] == ["r1", "r2"]
        assert store.get("r1") is not None
        assert store.get("r1").state is ReleaseState.SUPERSEDED
        assert store.get("r2") == r2
        assert sorted(store.ids()) == ["r1", "r2"]
    finally:
        engine.dispose()


def test_a_release_is_restored_only_with_the_settings_and_model_it_ran() -> None:
    """Rebuilding a release a previous supervisor created: the secret overrides are left to
    the supervisor (never stored), and any difference from what it ran is named."""
    record = _record(
        env={"FALCON_LOG_LEVEL": "ERROR", "FALCON_ADMIN_TOKEN": "<secret>"},
        settings_values={"log_level": '"ERROR"', "admin_token": "set:aaaa"},
        model_sha256="a" * 64,
    )
    assert restore_env(record) == {"FALCON_LOG_LEVEL": "ERROR"}
    path_only = _record(env={"FALCON_TLS_KEYFILE": "<secret>"},  # masked for its name only
                        settings_values={"tls_keyfile": '"/etc/falcon/tls.key"'})  # fmt: skip
    assert restore_env(path_only) == {"FALCON_TLS_KEYFILE": "/etc/falcon/tls.key"}
    same = {"log_level": '"ERROR"', "admin_token": "set:aaaa", "port": "9000"}
    assert restore_problems(record, values=same, model_sha256="a" * 64) == []
    assert inherited_changes(record, same) == ["port"]  # not r1's: inherited, not a problem
    other = {"log_level": '"INFO"', "admin_token": "set:bbbb"}
    assert restore_problems(record, values=other, model_sha256="b" * 64) == [
        "admin_token: a secret, changed since (its value is not stored)",
        'log_level: "ERROR" then, "INFO" now',
        f"model sha256 {'a' * 12} then, {'b' * 12} now",
    ]
    # a record from before releases kept their settings: its secret cannot be checked
    legacy = _record(env={"FALCON_ADMIN_TOKEN": "<secret>"}, model_sha256=None)
    [problem] = restore_problems(legacy, values=same, model_sha256=None)
    assert problem.startswith("admin_token: a secret override in a record that kept no HMAC")
    assert restore_problems(_record(env={"FALCON_LOG_LEVEL": "ERROR"}, model_sha256=None),
                            values=same, model_sha256=None) == []  # fmt: skip
