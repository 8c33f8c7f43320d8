"""The policy as pure functions: every rule fires on its bad value and stays quiet otherwise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from falcon_platform.config.gate import enforce_gate, judge
from falcon_platform.config.machine import MachineFacts, parse_meminfo, read_machine_facts
from falcon_platform.config.policy import RULE_IDS, Violation, evaluate_policy
from falcon_platform.config.settings import Settings, load_settings
from falcon_platform.config.spec import Spec
from falcon_platform.errors import ConfigError, PolicyViolationError
from falcon_platform.testing.config import TEST_ADMIN_TOKEN, TEST_DB_PASSWORD, scrub_falcon_env

MACHINE = MachineFacts(memory_mb=8192, cpu_count=4)
GOOD: dict[str, Any] = {
    "profile": "prod",
    "admin_token": TEST_ADMIN_TOKEN,
    "database_url": f"postgresql://falcon:{TEST_DB_PASSWORD}@127.0.0.1/falcon",
    "workers": 2,
    "memory_limit_mb": 512,
}


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    scrub_falcon_env(monkeypatch)
    monkeypatch.chdir(tmp_path)


def prod(**changes: Any) -> Settings:
    return load_settings(**{**GOOD, **changes})


def rules(settings: Settings, spec: Spec | None = None, **kw: Any) -> list[str]:
    found = evaluate_policy(settings, spec or Spec(), MACHINE, allow_faults=kw.get("allow", False))
    return [v.rule for v in found if v.severity == "error"]


def test_a_good_prod_config_has_no_violations() -> None:
    assert evaluate_policy(prod(), Spec(), MACHINE, allow_faults=False) == []


BAD_CASES = [
    ("faults-enabled", {"faults": "leak_mb_per_request=5"}),
    ("faults-invalid", {"faults": "leak_mb=5"}),
    ("log-level-debug", {"log_level": "debug"}),
    ("admin-token-missing", {"admin_token": None}),
    ("admin-token-default", {"admin_token": "change-me-admin-token"}),
    ("admin-token-default", {"admin_token": "short"}),
    ("database-password-missing", {"database_url": None}),
    ("database-password-missing", {"database_url": "postgresql://falcon@db/falcon"}),
    (
        "database-password-default",
        {"database_url": "postgresql://f:change-me-database-password@db/f"},
    ),
    ("redis-password-default", {"redis_url": "redis://:change-me-redis-password@r:6379/0"}),
    ("redis-password-missing", {"redis_url": "redis://r:6379/0"}),
    ("memory-limit-missing", {"memory_limit_mb": 0}),
    ("memory-overcommit", {"workers": 16, "memory_limit_mb": 512}),
    ("tls-incomplete", {"tls_certfile": "/etc/falcon/cert.pem"}),
    ("bind-without-tls", {"host": "0.0.0.0"}),
    ("bind-without-tls", {"control_host": "10.0.0.5"}),
    ("request-limits", {"max_body_bytes": 32 * 1_048_576}),
    ("request-limits", {"inference_timeout_ms": 120_000}),
]


@pytest.mark.parametrize(("rule", "changes"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_each_rule_refuses_its_bad_value_in_prod(rule: str, changes: dict[str, Any]) -> None:
    """Exactly the named rule fires (as an error) when only that value is bad."""
    assert rules(prod(**changes)) == [rule]


def test_every_rule_id_is_exercised_or_a_warning() -> None:
    """The RULE_IDS list (the runbook's sections) matches what the cases and warnings cover."""
    warnings = {"memory-soft-limit-off", "log-inputs", "spec-gate-disabled", "debug-switch"}
    assert {c[0] for c in BAD_CASES} | warnings == set(RULE_IDS)


# Weak secrets from the hardening issue (11, finding 8), each with why it is weak (a hand-written
# table: the reason is what the operator reads).
WEAK_SECRETS = [
    ("change-me-admin-token-2", "placeholder word"),
    ("aaaaaaaaaaaaaaaa", "guessable"),
    ("changemechangeme", "placeholder word"),
    (" " * 16, "whitespace"),
    ("password123", "placeholder word"),
    ("change%2Dme%2Dnow%2D7Hq4pL9x", "placeholder word"),  # percent-encoded placeholder
    ("Change_Me-9f8e7d6c5b4a", "placeholder word"),
    ("abcdefghijklmnopqrst", "guessable"),  # a sequence
    ("asdfghjklzxcvbnmpoiu", "guessable"),  # a keyboard run
    ("7Hq4pL9x2Wm", "shorter than 16"),
    ("7Hq4pL9x 2Wm5Rt8Kz3", "whitespace"),
]


@pytest.mark.parametrize(("secret", "why"), WEAK_SECRETS, ids=[w[0] for w in WEAK_SECRETS])
def test_weak_secrets_are_refused_in_every_secret_with_the_reason(secret: str, why: str) -> None:
    """The admin token, the database password and the Redis password are judged alike."""
    from urllib.parse import quote

    in_url = quote(secret, safe="%")  # as an operator would write it into a URL
    cases = {
        "admin-token-default": {"admin_token": secret},
        "database-password-default": {"database_url": f"postgresql://f:{in_url}@db/f"},
        "redis-password-default": {"redis_url": f"redis://:{in_url}@r:6379/0"},
    }
    for rule, changes in cases.items():
        found = [
            v
            for v in evaluate_policy(prod(**changes), Spec(), MACHINE, allow_faults=False)
            if v.severity == "error"
        ]
        assert [v.rule for v in found] == [rule], (rule, secret)
        assert why in found[0].why, found[0].why
        assert secret.strip() == "" or secret not in found[0].line()  # never shown


@pytest.mark.parametrize(
    "secret",
    [TEST_ADMIN_TOKEN, TEST_DB_PASSWORD, "0f3a9c7e5b1d2468", "Xk2_vQ9-Lm4pR7tZ8wB3nC6y"],
)
def test_strong_secrets_pass(secret: str) -> None:
    settings = prod(
        admin_token=secret,
        database_url=f"postgresql://f:{secret}@db/f",
        redis_url=f"redis://:{secret}@r:6379/0",
    )
    assert rules(settings) == []


def test_no_redis_url_needs_no_redis_password() -> None:
    """Without FALCON_REDIS_URL there is no Redis to protect (embedded stores)."""
    assert rules(prod(redis_url=None)) == []


def test_debug_switch_from_an_env_file_is_refused(tmp_path: Path) -> None:
    """The seed's DEBUG_MEMORY_GROWTH=true in a prod env file is a violation naming it."""
    env = tmp_path / "prod.env"
    env.write_text("DEBUG_MEMORY_GROWTH=true\n")
    settings = load_settings(env_file=env, **GOOD)
    found = evaluate_policy(settings, Spec(), MACHINE, allow_faults=False)
    assert [(v.rule, v.variable) for v in found] == [("debug-switch", "DEBUG_MEMORY_GROWTH")]


def test_loopback_binds_and_tls_pass() -> None:
    assert rules(prod(host="::1", control_host="localhost")) == []
    tls = {"tls_certfile": "/c.pem", "tls_keyfile": "/k.pem"}
    assert rules(prod(host="0.0.0.0", control_host="0.0.0.0", **tls)) == []
    assert rules(prod(control_host="0.0.0.0", control_socket="/run/falcon.sock")) == []


def test_memory_limit_from_the_spec_counts_and_workers_default_to_cores() -> None:
    """Unset FALCON_MEMORY_LIMIT_MB falls back to workers.memory_limit_mb; unset workers
    means one per core of the *target* machine (pure: MachineFacts, not os.cpu_count)."""
    spec_off = Spec.model_validate({"workers": {"memory_limit_mb": 0}})
    assert rules(prod(memory_limit_mb=None), spec_off) == ["memory-limit-missing"]
    big = Spec.model_validate({"workers": {"memory_limit_mb": 2048}})
    # 4 cores x 2048 MB = 8192 > 90% of 8192 MB
    assert rules(prod(memory_limit_mb=None, workers=None), big) == ["memory-overcommit"]
    assert rules(prod(memory_limit_mb=None, workers=3), big) == []


def test_allow_faults_turns_the_fault_refusal_into_a_warning() -> None:
    found = evaluate_policy(prod(faults="latency_ms=5"), Spec(), MACHINE, allow_faults=True)
    assert [(v.rule, v.severity) for v in found] == [("faults-enabled", "warning")]


def test_staging_warns_where_prod_refuses_and_dev_only_checks_fault_syntax() -> None:
    bad = {"log_level": "DEBUG", "admin_token": None, "faults": "latency_ms=5"}
    staging = evaluate_policy(prod(profile="staging", **bad), Spec(), MACHINE, allow_faults=False)
    assert {v.rule for v in staging} == {"log-level-debug", "admin-token-missing", "faults-enabled"}
    assert {v.severity for v in staging} == {"warning"}
    assert evaluate_policy(prod(profile="dev", **bad), Spec(), MACHINE, allow_faults=False) == []
    broken = evaluate_policy(prod(profile="dev", faults="nope=1"), Spec(), MACHINE,
                             allow_faults=False)  # fmt: skip
    assert [v.rule for v in broken] == ["faults-invalid"]


def test_secret_values_never_appear_in_violations() -> None:
    secret = "change-me-admin-token"
    found = evaluate_policy(
        prod(admin_token=secret, database_url="postgresql://u:change-me@h/d"),
        Spec(), MACHINE, allow_faults=False,
    )  # fmt: skip
    text = repr([v.to_dict() for v in found])
    assert "change-me" not in text
    assert {v.value for v in found} == {"<redacted>"}


def test_enforce_gate_raises_listing_every_violation_in_prod() -> None:
    settings = prod(log_level="DEBUG", admin_token=None, host="0.0.0.0")
    with pytest.raises(PolicyViolationError) as info:
        enforce_gate(settings, Spec(), override_reason=None, allow_faults=False, machine=MACHINE)
    for rule in ("log-level-debug", "admin-token-missing", "bind-without-tls"):
        assert f"[{rule}]" in info.value.detail
    assert "--override-gate" in info.value.detail


def test_enforce_gate_override_returns_the_reason_and_violations() -> None:
    outcome = enforce_gate(prod(log_level="DEBUG"), Spec(), override_reason="  INC-1 hotfix ",
                           allow_faults=False, machine=MACHINE)  # fmt: skip
    assert outcome.overridden
    assert not outcome.passed
    assert outcome.to_dict()["override_reason"] == "INC-1 hotfix"
    assert [v["rule"] for v in outcome.to_dict()["violations"]] == ["log-level-debug"]
    assert "OVERRIDDEN" in outcome.summary()


def test_enforce_gate_passes_staging_with_warnings_and_refuses_blank_reasons() -> None:
    outcome = enforce_gate(prod(profile="staging", log_level="DEBUG"), Spec(),
                           override_reason=None, allow_faults=False, machine=MACHINE)  # fmt: skip
    assert outcome.passed
    assert not outcome.overridden
    assert [v.rule for v in outcome.warnings] == ["log-level-debug"]
    with pytest.raises(ConfigError, match="needs a reason"):
        enforce_gate(prod(), Spec(), override_reason=" ", allow_faults=False, machine=MACHINE)


def test_an_override_without_violations_is_not_an_override() -> None:
    outcome = judge([], profile="prod", override_reason="just in case")
    assert outcome.passed
    assert not outcome.overridden
    assert outcome.override_reason is None
    warning = Violation("log-inputs", "FALCON_LOG_INPUTS", "true", "w", "f", "warning")
    assert judge([warning], profile="prod", override_reason=None).passed


def test_machine_facts_parse_meminfo_and_cgroup_limits(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24608000 kB\nMemFree: 1 kB\n")
    assert parse_meminfo(meminfo.read_text()) == 24031
    cgroup = tmp_path / "cg"
    (cgroup / "memory").mkdir(parents=True)
    (cgroup / "memory" / "memory.limit_in_bytes").write_text(str(2048 * 1_048_576))
    facts = read_machine_facts(meminfo, cgroup)
    assert facts.memory_mb == 2048
    assert "cgroup" in facts.source
    assert facts.cgroup_limited
    (cgroup / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712")
    assert read_machine_facts(meminfo, cgroup).memory_mb == 24031
    assert not read_machine_facts(meminfo, cgroup).cgroup_limited


def test_a_lone_worker_is_judged_as_one_process() -> None:
    """`falcon worker` in a 1 GiB pod on a 16-core node: 1 x 512 MB fits, 16 x 512 does not."""
    pod = MachineFacts(memory_mb=1024, cpu_count=16, source="cgroup")
    settings = prod(workers=None, memory_limit_mb=512)
    assert [v.rule for v in evaluate_policy(settings, Spec(), pod, allow_faults=False)] == [
        "memory-overcommit"
    ]
    outcome = enforce_gate(
        settings, Spec(), override_reason=None, allow_faults=False, machine=pod, workers=1
    )
    assert outcome.passed


def test_a_lone_worker_may_use_its_whole_container_limit() -> None:
    """A Kubernetes pod whose memory limit is the worker's own (512 MiB, as rendered): the
    kernel enforces exactly the worker's limit, nothing else runs there. The same 512 MB as
    a machine's RAM (no cgroup), or two workers, still leave no room and are refused."""
    settings = prod(workers=None, memory_limit_mb=512)

    def rules(machine: MachineFacts, workers: int | None) -> list[str]:
        found = evaluate_policy(settings, Spec(), machine, allow_faults=False, workers=workers)
        return [v.rule for v in found]

    pod = MachineFacts(memory_mb=512, cpu_count=16, source="cgroup", cgroup_limited=True)
    assert rules(pod, 1) == []
    assert rules(MachineFacts(memory_mb=512, cpu_count=16), 1) == ["memory-overcommit"]
    assert rules(pod, 2) == ["memory-overcommit"]
    smaller = MachineFacts(memory_mb=511, cpu_count=16, source="cgroup", cgroup_limited=True)
    assert rules(smaller, 1) == ["memory-overcommit"]
