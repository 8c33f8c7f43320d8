"""The shared alert scenarios (tests/promtool/scenarios) through the local evaluator.

Each scenario states which alerts must fire and when; the evaluator must meet it. The
promtool test files beside the scenarios are generated from the evaluator's timeline and
must be current (regenerate with FALCON_UPDATE_GOLDEN=1); promtool then checks Prometheus
agrees (tests/integration/test_promtool_rules.py).
"""

from pathlib import Path

import pytest

from falcon_platform.config.spec import AlertSpec, Spec
from falcon_platform.observability.alert_defs import alert_names
from falcon_platform.testing.alert_scenarios import (
    Expectation,
    check_expectations,
    expand_values,
    first_firing,
    load_scenario,
    parse_selector,
    render_promtool_test,
    run_evaluator,
)
from falcon_platform.testing.golden import assert_golden

PROMTOOL_DIR = Path(__file__).parents[1] / "promtool"
SCENARIOS = sorted((PROMTOOL_DIR / "scenarios").glob("*.yml"))
RULES_FROM_TESTS = "../golden/prometheus/falcon-rules.yml"


def test_there_are_scenarios_for_every_case_the_issue_names() -> None:
    assert {p.stem for p in SCENARIOS} >= {"seed", "error_spike", "slow_burn", "low_traffic"}


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_local_evaluator_meets_the_scenario(path: Path) -> None:
    """Exactly the expected alerts fire, each within its window; nothing else fires."""
    scenario = load_scenario(path)
    assert check_expectations(scenario, run_evaluator(scenario, Spec())) == []


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_promtool_test_files_match_the_local_evaluator(path: Path) -> None:
    scenario = load_scenario(path)
    text = render_promtool_test(
        scenario, run_evaluator(scenario, Spec()), alert_names(Spec()), RULES_FROM_TESTS
    )
    assert_golden(PROMTOOL_DIR / f"{scenario.name}.test.yml", text)


def test_seed_memory_alert_fires_before_the_first_oom_kill() -> None:
    """The seed leak (150 MB -> 1 GB in 2 min) is flagged 30 s before the kill; '80% for 1 m' is not enough."""
    scenario = load_scenario(PROMTOOL_DIR / "scenarios" / "seed.yml")
    first = first_firing(run_evaluator(scenario, Spec()))
    assert first["FalconWorkerMemoryGrowth"] < first["FalconWorkerOOMKilled"]
    assert first["FalconWorkerOOMKilled"] - scenario.t0 == 120
    assert "FalconWorkerMemoryHigh" not in first


def test_low_traffic_guard_is_what_keeps_the_night_quiet() -> None:
    """Without the guard, 3 errors among 3 requests a minute page and trip the 10% alert."""
    scenario = load_scenario(PROMTOOL_DIR / "scenarios" / "low_traffic.yml")
    unguarded = Spec(alerts=AlertSpec(low_traffic_min_rps=0))
    first = first_firing(run_evaluator(scenario, unguarded))
    assert {"FalconErrorBudgetBurn", "FalconHighErrorRate"} <= set(first)
    assert first_firing(run_evaluator(scenario, Spec())) == {}


def test_a_stricter_spec_changes_what_fires() -> None:
    """A 15% critical threshold lets the 12% spike through: the spec, not the code, decides."""
    scenario = load_scenario(PROMTOOL_DIR / "scenarios" / "error_spike.yml")
    lenient = Spec(alerts=AlertSpec(error_rate_critical=0.15))
    assert "FalconHighErrorRate" not in first_firing(run_evaluator(scenario, lenient))


def test_expectations_report_what_is_wrong() -> None:
    scenario = load_scenario(PROMTOOL_DIR / "scenarios" / "error_spike.yml")
    timeline = run_evaluator(scenario, Spec())
    wrong = type(scenario)(
        **{
            **scenario.__dict__,
            "expect": [Expectation("FalconHighErrorRate", fires_between=(0, 30))],
        }
    )
    problems = check_expectations(wrong, timeline)
    assert any("FalconHighErrorRate {} fired at +120s, expected 0..30s" in p for p in problems)
    assert any(p.startswith("unexpected alert FalconErrorBudgetBurn") for p in problems)


def test_series_notation_is_read_as_promtool_reads_it() -> None:
    assert expand_values("1+2x3 _ 5 _x2 4-1x1") == [1, 3, 5, 7, None, 5, None, None, 4, 3]
    assert parse_selector('up{job="a",instance="b"}') == ("up", {"job": "a", "instance": "b"})
    with pytest.raises(ValueError, match="unsupported"):
        expand_values("1 two")


def test_every_alert_fires_in_some_scenario() -> None:
    """So promtool checks every rule's firing path, not only that it parses."""
    fired: set[str] = set()
    for path in SCENARIOS:
        scenario = load_scenario(path)
        fired |= set(first_firing(run_evaluator(scenario, Spec())))
    assert fired == set(alert_names(Spec()))
