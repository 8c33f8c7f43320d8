"""The gate on every path that starts workers: ``judge_release_env`` (issue 11, finding 7).

Pure: the environment, the working directory and the machine are passed in. The attack from
the issue: a prod deployment whose profile comes from its env file, restarted with
``FALCON_PROFILE=dev`` + faults + DEBUG logs in the release environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from falcon_platform.config.gate import DEPLOYMENT_FIXED, judge_release_env
from falcon_platform.config.machine import MachineFacts
from falcon_platform.config.spec import Spec
from falcon_platform.errors import ReleaseRefusedError
from falcon_platform.testing.config import passing_prod_env, scrub_falcon_env, write_env

MACHINE = MachineFacts(memory_mb=8192, cpu_count=4)
ATTACK = {
    "FALCON_PROFILE": "dev",
    "FALCON_FAULTS": "error_ratio=0.5,leak_mb_per_request=1",
    "FALCON_LOG_LEVEL": "DEBUG",
}


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    scrub_falcon_env(monkeypatch)


@pytest.fixture
def prod_env_file(tmp_path: Path) -> Path:
    # The template's way: the profile is set inside the file, not on the command line.
    return write_env(tmp_path / "prod.env", passing_prod_env())


def judge(env_file: Path, env: dict[str, str], **kw: Any):  # type: ignore[no-untyped-def]
    args: dict[str, Any] = {
        "path": "restart",
        "profile": "prod",
        "env": env,
        "base_environ": {},
        "env_file": env_file,
        "cwd": env_file.parent,
        "spec": Spec(),
        "machine": MACHINE,
        "override_reason": None,
        "allow_faults": False,
    }
    args.update(kw)
    return judge_release_env(**args)


def test_the_passing_prod_release_is_allowed(prod_env_file: Path) -> None:
    verdict = judge(prod_env_file, {})
    assert verdict.allowed
    assert verdict.settings is not None
    assert verdict.settings.profile == "prod"


def test_the_issue_attack_is_refused_before_anything_starts(prod_env_file: Path) -> None:
    verdict = judge(prod_env_file, ATTACK)
    assert not verdict.allowed
    assert "FALCON_PROFILE cannot change in a running prod deployment" in (verdict.refused or "")
    assert verdict.to_dict()["env_keys"] == sorted(ATTACK)
    with pytest.raises(ReleaseRefusedError) as caught:
        verdict.raise_if_refused()
    assert caught.value.http_status == 422


def test_an_override_does_not_unlock_a_profile_change(prod_env_file: Path) -> None:
    verdict = judge(prod_env_file, ATTACK, override_reason="INC-1 hotfix", allow_faults=True)
    assert not verdict.allowed


def test_without_the_profile_the_merged_settings_fail_the_prod_policy(
    prod_env_file: Path,
) -> None:
    """Faults + DEBUG in the release env are judged on the merged settings (env file + env):
    every violation is named; nothing is shown of a secret."""
    env = {k: v for k, v in ATTACK.items() if k != "FALCON_PROFILE"}
    verdict = judge(prod_env_file, env)
    assert not verdict.allowed
    assert verdict.outcome is not None
    assert {v.rule for v in verdict.outcome.errors} == {"faults-enabled", "log-level-debug"}
    assert "refusing the restart" in (verdict.refused or "")


def test_an_override_allows_it_and_is_recorded_as_overridden(prod_env_file: Path) -> None:
    env = {"FALCON_FAULTS": "latency_ms=1"}
    verdict = judge(prod_env_file, env, override_reason="drill INC-2", allow_faults=True)
    assert verdict.allowed
    assert verdict.outcome is not None
    assert verdict.outcome.errors == ()  # --allow-faults turned it into a warning
    assert [w.rule for w in verdict.outcome.warnings] == ["faults-enabled"]
    overridden = judge(prod_env_file, {"FALCON_LOG_LEVEL": "DEBUG"}, override_reason="INC-3")
    assert overridden.allowed
    assert overridden.outcome is not None
    assert overridden.outcome.overridden
    assert overridden.to_dict()["override_reason"] == "INC-3"


def test_the_environment_of_the_supervisor_counts_as_a_worker_sees_it(
    prod_env_file: Path,
) -> None:
    """The worker gets the supervisor's environment plus the release env: both are judged."""
    verdict = judge(prod_env_file, {}, base_environ={"FALCON_LOG_LEVEL": "DEBUG"})
    assert not verdict.allowed
    assert "log-level-debug" in (verdict.refused or "")


def test_the_env_file_is_read_again(tmp_path: Path) -> None:
    """A plain restart re-reads the env file: a fault added to it since `up` is caught."""
    env_file = write_env(tmp_path / "prod.env", passing_prod_env(FALCON_FAULTS="latency_ms=5"))
    assert "faults-enabled" in (judge(env_file, {}).refused or "")


@pytest.mark.parametrize("name", [n for n in DEPLOYMENT_FIXED if n != "FALCON_PROFILE"])
def test_deployment_wide_settings_cannot_change_in_a_release(
    prod_env_file: Path, name: str
) -> None:
    assert "cannot change in a running prod deployment" in (
        judge(prod_env_file, {name: "x"}).refused or ""
    )


def test_bad_values_and_foreign_names_are_refused_with_the_reason(prod_env_file: Path) -> None:
    assert "FALCON_QUEUE_MAX" in (judge(prod_env_file, {"FALCON_QUEUE_MAX": "lots"}).refused or "")
    assert "only FALCON_* variables" in (judge(prod_env_file, {"PATH": "/x"}).refused or "")
    blank = judge(prod_env_file, {"FALCON_LOG_LEVEL": "DEBUG"}, override_reason="  ")
    assert "needs a reason" in (blank.refused or "")


def test_dev_deployments_are_not_policed_but_keep_their_profile(tmp_path: Path) -> None:
    dev_file = write_env(tmp_path / "dev.env", {"FALCON_PROFILE": "dev"})
    assert judge(dev_file, {"FALCON_LOG_LEVEL": "DEBUG"}, profile="dev").allowed
    assert not judge(dev_file, {"FALCON_PROFILE": "prod"}, profile="dev").allowed


def test_the_deploy_path_is_judged_by_the_same_gate(prod_env_file: Path, tmp_path: Path) -> None:
    """``Supervisor.add_release`` (what the coming deploy calls): refused -> nothing added and
    ``gate_refused`` journaled; overridden -> added with its own override for its workers."""
    from falcon_platform.config.settings import Settings
    from falcon_platform.events.journal import EventKind
    from falcon_platform.supervisor.release_gate import ReleaseGate
    from falcon_platform.supervisor.supervisor import Supervisor
    from falcon_platform.testing.journal import FakeEventJournal

    journal = FakeEventJournal()
    gate = ReleaseGate(
        profile="prod",
        env_file=prod_env_file,
        spec=Spec(),
        base_environ={},
        cwd=tmp_path,
        machine=lambda: MACHINE,
    )
    sup = Supervisor(
        Settings(home=tmp_path / "home"), Spec(), journal, workers=1, release_gate=gate
    )
    with pytest.raises(ReleaseRefusedError):
        sup.add_release(ATTACK)
    assert set(sup.releases) == {"r0"}
    [refused] = journal.query(kinds=[EventKind.GATE_REFUSED])
    assert refused.details["path"] == "deploy"
    release = sup.add_release({"FALCON_LOG_LEVEL": "DEBUG"}, override_reason="INC-4 debug")
    assert release.gate_args == ("--override-gate", "INC-4 debug")
    [override] = journal.query(kinds=[EventKind.GATE_OVERRIDE])
    assert override.release == release.id
    assert gate.worker_args() == ["--profile", "prod", "--env-file", str(prod_env_file)]
