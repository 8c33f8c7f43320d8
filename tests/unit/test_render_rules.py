"""Prometheus rules rendered from the spec: pinned by a golden file, thresholds from the spec."""

from pathlib import Path

import yaml

from falcon_platform.config.spec import AlertSpec, BurnWindow, SLOSpec, Spec
from falcon_platform.files import write_atomic
from falcon_platform.observability import names
from falcon_platform.observability.alert_defs import alert_names
from falcon_platform.render.prometheus import (
    RULES_FILENAME,
    render_prometheus,
    render_rules,
)
from falcon_platform.testing.golden import assert_golden

ROOT = Path(__file__).parents[2]
GOLDEN = ROOT / "tests" / "golden" / "prometheus" / RULES_FILENAME


def _rules(spec: Spec) -> dict[str, list[dict]]:  # type: ignore[type-arg]
    doc = yaml.safe_load(render_rules(spec))
    return {g["name"]: g["rules"] for g in doc["groups"]}


def _alert(spec: Spec, name: str) -> list[dict]:  # type: ignore[type-arg]
    return [r for rules in _rules(spec).values() for r in rules if r.get("alert") == name]


def test_rules_match_the_golden_file() -> None:
    assert_golden(GOLDEN, render_rules(Spec()))


def test_deploy_example_is_the_rendered_default() -> None:
    assert (ROOT / "deploy" / "prometheus" / RULES_FILENAME).read_text(
        encoding="utf-8"
    ) == render_rules(Spec())


def test_render_prometheus_writes_the_one_rules_file() -> None:
    # Determinism across processes (hash seeds differ per run) is what the golden test shows.
    assert list(render_prometheus(Spec())) == [RULES_FILENAME]
    assert render_prometheus(Spec())[RULES_FILENAME] == render_rules(Spec())


def test_every_alert_has_severity_summary_description_and_runbook() -> None:
    for rules in _rules(Spec()).values():
        for rule in (r for r in rules if "alert" in r):
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}
            assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}
            assert rule["annotations"]["runbook_url"].endswith("#" + rule["alert"].lower())


def test_all_alerts_the_issue_names_are_rendered() -> None:
    assert alert_names(Spec()) == [
        "FalconErrorBudgetBurn",
        "FalconHighErrorRate",
        "FalconHighLatency",
        "FalconWorkerMemoryHigh",
        "FalconWorkerMemoryGrowth",
        "FalconWorkerOOMKilled",
        "FalconWorkerRecycling",
        "FalconCanaryAborted",
        "FalconCrashLoop",
        "FalconNoReadyWorker",
        "FalconSupervisorDown",
        "FalconFaultsActiveInProd",
        "FalconConfigChanged",
        "FalconRequestLogBacklog",
    ]


def test_burn_rate_alerts_follow_the_spec_windows_and_severities() -> None:
    burns = _alert(Spec(), "FalconErrorBudgetBurn")
    assert [
        (b["labels"]["long_window"], b["labels"]["short_window"], b["labels"]["severity"])
        for b in burns
    ] == [
        ("1h", "5m", "critical"),
        ("6h", "30m", "critical"),
        ("3d", "6h", "warning"),
    ]
    assert burns[0]["expr"].splitlines() == [
        "falcon:request_error_ratio:rate1h > 0.0144",
        "  and falcon:request_error_ratio:rate5m > 0.0144",
        "  and falcon:requests:rate1h >= 0.1",
    ]
    custom = Spec(
        slo=SLOSpec(availability=0.99),
        alerts=AlertSpec(
            burn_windows=[BurnWindow(severity="page", factor=10, long=7200, short=600)]
        ),
    )
    (burn,) = _alert(custom, "FalconErrorBudgetBurn")
    assert "falcon:request_error_ratio:rate2h > 0.1" in burn["expr"]
    assert "falcon:request_error_ratio:rate10m > 0.1" in burn["expr"]
    records = {r["record"] for r in _rules(custom)["falcon-slo"] if "record" in r}
    assert {"falcon:request_error_ratio:rate2h", "falcon:request_error_ratio:rate10m"} <= records


def test_direct_alert_thresholds_and_for_durations_come_from_the_spec() -> None:
    spec = Spec(
        alerts=AlertSpec(
            memory_percent=90,
            memory_for=120,
            error_rate_critical=0.05,
            request_log_pending_budget=7,
        )
    )
    (memory,) = _alert(spec, "FalconWorkerMemoryHigh")
    (errors,) = _alert(spec, "FalconHighErrorRate")
    (backlog,) = _alert(spec, "FalconRequestLogBacklog")
    assert memory["expr"].endswith("> 0.9")
    assert memory["for"] == "2m"
    assert "falcon:request_error_ratio:rate1m > 0.05" in errors["expr"]
    assert backlog["expr"] == f"sum({names.REQUEST_LOG_PENDING}) > 7"


def test_recording_rules_come_before_the_alerts_that_read_them() -> None:
    slo = _rules(Spec())["falcon-slo"]
    first_alert = next(i for i, r in enumerate(slo) if "alert" in r)
    assert all("record" in r for r in slo[:first_alert])
    assert all("alert" in r for r in slo[first_alert:])


def test_write_atomic_replaces_the_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "out" / "rules.yml"
    write_atomic(target, "one\n")
    write_atomic(target, "two\n")
    assert target.read_text() == "two\n"
    assert [p.name for p in target.parent.iterdir()] == ["rules.yml"]
