"""Prometheus's own tool on Falcon's rules: `promtool check rules` and `promtool test rules`.

The scenario tests (tests/promtool/*.test.yml) are written by hand: the expected alerts at
chosen evaluation steps, each with its arithmetic. promtool must pass them, and the local
evaluator must pass the same cases (tests/unit/test_alerting_scenarios.py). Under a tuned
spec, for which nobody wrote the answer, a differential test asks promtool to fire what the
evaluator fires. Missing promtool skips locally and fails under CI=true.
"""

import dataclasses
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from falcon_platform.config.spec import AlertSpec, Spec
from falcon_platform.observability.alert_defs import alert_names
from falcon_platform.render.grafana import dashboard
from falcon_platform.render.prometheus import RULES_FILENAME, render_rules
from falcon_platform.testing.alert_scenarios import (
    RuleCase,
    check_rule_cases,
    load_scenario,
    render_promtool_test,
    run_evaluator,
)
from falcon_platform.testing.servers import find_binary

pytestmark = pytest.mark.integration

PROMTOOL_DIR = Path(__file__).parents[1] / "promtool"
SCENARIOS = sorted((PROMTOOL_DIR / "scenarios").glob("*.yml"))
TUNED = Spec(
    alerts=AlertSpec(error_rate_critical=0.05, error_rate_for=30, memory_percent=70, memory_for=15)
)


@pytest.fixture(scope="module")
def promtool() -> str:
    return find_binary("promtool")  # skips with the reason, fails when CI=true


def _run(promtool: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )


@pytest.mark.parametrize("spec", [Spec(), TUNED], ids=["default", "tuned"])
def test_rendered_rules_pass_promtool_check(promtool: str, tmp_path: Path, spec: Spec) -> None:
    rules = tmp_path / RULES_FILENAME
    rules.write_text(render_rules(spec))
    done = _run(promtool, "check", "rules", str(rules))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_hand_written_promtool_unit_tests_pass(promtool: str) -> None:
    files = sorted(p.name for p in PROMTOOL_DIR.glob("*.test.yml"))
    assert len(files) == len(SCENARIOS)
    done = _run(promtool, "test", "rules", *files, cwd=PROMTOOL_DIR)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == len(files)


def _copy_with_rules(tmp_path: Path, name: str, rules: str, text: str | None = None) -> str:
    """The hand-written test file ``name`` in ``tmp_path``, reading ``rules`` beside it."""
    (tmp_path / RULES_FILENAME).write_text(rules)
    source = (PROMTOOL_DIR / name).read_text() if text is None else text
    (tmp_path / name).write_text(
        source.replace("../golden/prometheus/falcon-rules.yml", RULES_FILENAME)
    )
    return name


def test_a_wrong_hand_written_expectation_fails_promtool_and_the_evaluator(
    promtool: str, tmp_path: Path
) -> None:
    """One step off: the spike's critical alert claimed firing at t0 + 1m45s (it fires at
    t0 + 2m). promtool fails on it, and so does the evaluator check on the same cases."""
    original = (PROMTOOL_DIR / "error_spike.test.yml").read_text()
    claim = "- eval_time: 3705s  # k=7: true for 45 s < 1m: still pending\n        alertname: FalconHighErrorRate\n        exp_alerts: []"
    assert claim in original
    wrong = original.replace(
        claim,
        claim.replace(
            "exp_alerts: []", "exp_alerts: [{exp_labels: {severity: critical, service: falcon}}]"
        ),
    )
    name = _copy_with_rules(tmp_path, "error_spike.test.yml", render_rules(Spec()), wrong)
    done = _run(promtool, "test", "rules", name, cwd=tmp_path)
    assert done.returncode != 0
    assert "alertname: FalconHighErrorRate, time: 1h1m45s" in done.stdout + done.stderr

    scenario = load_scenario(PROMTOOL_DIR / "scenarios" / "error_spike.yml")
    wrong_cases = [
        RuleCase(
            c.eval_time,
            c.alertname,
            ((tuple(sorted({"severity": "critical", "service": "falcon"}.items())), ()),),
        )
        if (c.eval_time, c.alertname) == (3705, "FalconHighErrorRate")
        else c
        for c in scenario.rule_cases
    ]
    wrong_scenario = dataclasses.replace(scenario, rule_cases=wrong_cases)
    assert check_rule_cases(wrong_scenario, run_evaluator(scenario, Spec())) == [
        "FalconHighErrorRate at 3705s: expected {'service': 'falcon', 'severity': 'critical'}, "
        "the evaluator fires nothing"
    ]


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_prometheus_agrees_with_the_local_evaluator_under_a_tuned_spec(
    promtool: str, tmp_path: Path, path: Path
) -> None:
    """Not only the defaults: other thresholds and `for` durations agree too.

    A differential test (two implementations, no hand-written answer for this spec): the
    evaluator's timeline becomes promtool's expectation, in tmp_path, never checked in.
    """
    scenario = load_scenario(path)
    (tmp_path / RULES_FILENAME).write_text(render_rules(TUNED))
    test_file = tmp_path / f"{scenario.name}.test.yml"
    test_file.write_text(
        render_promtool_test(
            scenario, run_evaluator(scenario, TUNED), alert_names(TUNED), RULES_FILENAME
        )
    )
    done = _run(promtool, "test", "rules", test_file.name, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_catches_rules_that_disagree(promtool: str, tmp_path: Path) -> None:
    """Rules rendered with a 2 m `for` fail the hand-written 1 m timeline."""
    rules = render_rules(Spec(alerts=AlertSpec(error_rate_for=120)))
    name = _copy_with_rules(tmp_path, "error_spike.test.yml", rules)
    done = _run(promtool, "test", "rules", name, cwd=tmp_path)
    assert done.returncode != 0
    assert "alertname: FalconHighErrorRate" in done.stdout + done.stderr


def test_dashboard_queries_are_valid_promql(promtool: str, tmp_path: Path) -> None:
    """Every panel query (Grafana variables substituted) parses as PromQL."""
    rules = []
    for panel in dashboard(Spec())["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$__rate_interval", "5m").replace("$release", ".*")
            rules.append(
                {
                    "record": f"dashboard:{re.sub(r'[^a-z0-9]+', '_', panel['title'].lower())}",
                    "expr": expr,
                }
            )
    assert len(rules) >= 20
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = _run(promtool, "check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_deploy_example_prometheus_config_and_rules_pass_promtool(promtool: str) -> None:
    deploy = Path(__file__).parents[2] / "deploy" / "prometheus"
    done = _run(promtool, "check", "config", "prometheus.yml", cwd=deploy)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "falcon-rules.yml" in done.stdout  # the rule file was found and checked too
