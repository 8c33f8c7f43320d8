"""Alert scenarios shared by promtool and the local evaluator.

A scenario is two reviewed files. ``tests/promtool/<name>.test.yml`` is a ``promtool test
rules`` file written by hand: synthetic series in promtool's ``input_series`` notation and
the expected alerts at chosen evaluation times, each with a comment giving the arithmetic.
``tests/promtool/scenarios/<name>.yml`` adds what promtool's format has no room for (t0, the
profile, a description, coarse "fires between" windows). promtool checks the rendered rules
against the hand-written cases; :func:`check_rule_cases` checks the local evaluator against
the same cases. Neither answer comes from the code under test::

    scenario = load_scenario(Path("tests/promtool/scenarios/seed.yml"))
    timeline = run_evaluator(scenario, Spec())
    check_rule_cases(scenario, timeline)            # -> [] when the evaluator agrees
    first_firing(timeline)["FalconWorkerOOMKilled"]   # -> 420.0

The notation parser is hand-written because no Python package reads promtool's
series notation (``0+10x5``, ``_x3``, ``7``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from falcon_platform.config.spec import Spec, format_duration, parse_duration
from falcon_platform.observability.evaluator import Alert, AlertEvaluator
from falcon_platform.testing.sli import FakeSLISource

_TOKEN = re.compile(
    r"^(?P<a>-?\d+(?:\.\d+)?(?:e[+-]?\d+)?)(?:(?P<op>[+-])(?P<b>\d+(?:\.\d+)?(?:e[+-]?\d+)?))?x(?P<n>\d+)$"
)
_SELECTOR = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


def expand_values(text: str) -> list[float | None]:
    """``"1+2x3 _ 5 _x2"`` -> ``[1, 3, 5, 7, None, 5, None, None]`` (None: no sample).

    As promtool: ``a+bxn`` is n+1 values, ``_xn`` is n missing samples, ``stale`` a
    staleness marker (NaN: the series ended).
    """
    values: list[float | None] = []
    for item in text.split():
        if item == "stale":
            values.append(math.nan)
        elif item == "_":
            values.append(None)
        elif item.startswith("_x"):
            values.extend([None] * int(item[2:]))
        elif match := _TOKEN.match(item):
            start = float(match["a"])
            step = float(match["b"] or 0) * (-1 if match["op"] == "-" else 1)
            values.extend(start + i * step for i in range(int(match["n"]) + 1))
        else:
            try:
                values.append(float(item))
            except ValueError:
                raise ValueError(f"unsupported series value {item!r}") from None
    return values


def parse_selector(text: str) -> tuple[str, dict[str, str]]:
    """``'up{job="a"}'`` -> ``("up", {"job": "a"})``."""
    match = _SELECTOR.match(text.strip())
    if not match:
        raise ValueError(f"cannot parse series {text!r}")
    labels = dict(_LABEL.findall(match["labels"] or ""))
    return match["name"], labels


@dataclass(frozen=True)
class Expectation:
    """``alert`` (with labels including ``labels``) first fires in ``[fires_between]``, or never."""

    alert: str
    labels: Mapping[str, str] = field(default_factory=dict)
    fires_between: tuple[float, float] | None = None  # seconds after the scenario's t0

    def matches(self, alert: Alert) -> bool:
        return alert.name == self.alert and all(
            alert.labels.get(k) == v for k, v in self.labels.items()
        )


Pairs = tuple[tuple[str, str], ...]
FiringSet = tuple[tuple[Pairs, Pairs], ...]  # sorted (labels, annotations) of each alert


@dataclass(frozen=True)
class RuleCase:
    """One ``alert_rule_test`` entry: at ``eval_time`` exactly ``expected`` of ``alertname`` fire.

    ``expected`` holds, per alert, its labels (without ``alertname``) and annotations, sorted
    so that two cases compare as promtool compares them.
    """

    eval_time: float
    alertname: str
    expected: FiringSet


def _as_pairs(mapping: Mapping[str, Any] | None) -> Pairs:
    return tuple(sorted((str(k), str(v)) for k, v in (mapping or {}).items()))


def load_rule_cases(path: Path) -> tuple[float, list[tuple[str, str]], list[RuleCase]]:
    """(interval, input series, cases) of a hand-written ``promtool test rules`` file."""
    raw: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    (test,) = raw["tests"]
    interval = parse_duration(test["interval"])
    if parse_duration(raw["evaluation_interval"]) != interval:
        raise ValueError(f"{path}: evaluation_interval must equal the series interval")
    cases = [
        RuleCase(
            eval_time=parse_duration(case["eval_time"]),
            alertname=case["alertname"],
            expected=tuple(
                sorted(
                    (_as_pairs(a.get("exp_labels")), _as_pairs(a.get("exp_annotations")))
                    for a in case.get("exp_alerts") or []
                )
            ),
        )
        for case in test["alert_rule_test"]
    ]
    series = [(s["series"], str(s["values"])) for s in test["input_series"]]
    return interval, series, cases


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    interval: float  # between samples and between evaluations
    duration: float
    t0: float  # "the leak started" / "the spike started": times are reported from here
    series: list[tuple[str, str]]  # (selector, values) exactly as promtool reads them
    expect: list[Expectation]
    profile: str = "dev"
    rule_cases: list[RuleCase] = field(default_factory=list)  # the hand-written promtool cases

    def steps(self) -> list[float]:
        count = int(self.duration // self.interval)
        return [i * self.interval for i in range(count + 1)]


def load_scenario(path: Path) -> Scenario:
    """``scenarios/<name>.yml`` with the series and cases of ``../<name>.test.yml``."""
    raw: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    interval, series, cases = load_rule_cases(path.parent.parent / f"{raw['name']}.test.yml")
    if parse_duration(raw["interval"]) != interval:
        raise ValueError(f"{path}: interval differs from the promtool test file's")
    expect = []
    for item in raw.get("expect", []):
        between = item.get("fires_between")
        expect.append(
            Expectation(
                alert=item["alert"],
                labels={str(k): str(v) for k, v in (item.get("labels") or {}).items()},
                fires_between=(parse_duration(between[0]), parse_duration(between[1]))
                if between
                else None,
            )
        )
    return Scenario(
        name=raw["name"],
        description=raw["description"].strip(),
        interval=parse_duration(raw["interval"]),
        duration=parse_duration(raw["duration"]),
        t0=parse_duration(raw.get("t0", 0)),
        series=series,
        expect=expect,
        profile=raw.get("profile", "dev"),
        rule_cases=cases,
    )


def feed(scenario: Scenario, source: FakeSLISource | None = None) -> FakeSLISource:
    """The scenario's series as an SLI source (sample i at ``i * interval``)."""
    source = source if source is not None else FakeSLISource()
    for selector, text in scenario.series:
        name, labels = parse_selector(selector)
        for i, value in enumerate(expand_values(text)):
            if value is not None:
                source.add(name, labels, i * scenario.interval, value)
    return source


Timeline = dict[float, list[Alert]]


def run_evaluator(scenario: Scenario, spec: Spec, *, profile: str | None = None) -> Timeline:
    """Evaluate every ``interval`` from 0 to ``duration``; the firing alerts at each step."""
    source = feed(scenario)
    evaluator = AlertEvaluator(spec, profile=profile or scenario.profile)
    timeline: Timeline = {}
    for now in scenario.steps():
        evaluator.evaluate(source, now)
        timeline[now] = evaluator.firing()
    return timeline


def first_firing(timeline: Timeline, expectation: Expectation | None = None) -> dict[str, float]:
    """Alert name (or the expectation's alert) -> first time it was firing."""
    first: dict[str, float] = {}
    for ts in sorted(timeline):
        for alert in timeline[ts]:
            if expectation is not None and not expectation.matches(alert):
                continue
            first.setdefault(alert.name, ts)
    return first


def check_expectations(scenario: Scenario, timeline: Timeline) -> list[str]:
    """What the timeline gets wrong against the scenario's expectations (empty: all good)."""
    problems = []
    for exp in scenario.expect:
        when = first_firing(timeline, exp).get(exp.alert)
        if exp.fires_between is None:
            if when is not None:
                problems.append(
                    f"{exp.alert} {dict(exp.labels)} must not fire, fired at {when - scenario.t0:+.0f}s"
                )
            continue
        lo, hi = exp.fires_between
        if when is None:
            problems.append(
                f"{exp.alert} {dict(exp.labels)} never fired (expected {lo:.0f}..{hi:.0f}s)"
            )
        elif not lo <= when - scenario.t0 <= hi:
            problems.append(
                f"{exp.alert} {dict(exp.labels)} fired at {when - scenario.t0:+.0f}s, expected {lo:.0f}..{hi:.0f}s"
            )
    expected = [e for e in scenario.expect if e.fires_between is not None]
    for alerts in timeline.values():
        for alert in alerts:
            if not any(e.matches(alert) for e in expected):
                problems.append(f"unexpected alert {alert.name} {alert.labels}")
    return sorted(set(problems))


def check_rule_cases(scenario: Scenario, timeline: Timeline) -> list[str]:
    """Where the timeline differs from the hand-written promtool cases (empty: it agrees).

    Compared as promtool compares: at each case's ``eval_time``, the firing alerts of its
    ``alertname``, labels and annotations, as a set.
    """
    problems = []
    for case in scenario.rule_cases:
        if case.eval_time not in timeline:
            problems.append(f"{case.alertname} at {case.eval_time:.0f}s: not an evaluation step")
            continue
        got: FiringSet = tuple(
            sorted(
                (
                    _as_pairs({k: v for k, v in a.labels.items() if k != "alertname"}),
                    _as_pairs(a.annotations),
                )
                for a in timeline[case.eval_time]
                if a.name == case.alertname
            )
        )
        if got == case.expected:
            continue
        where = f"{case.alertname} at {case.eval_time:.0f}s"
        if [labels for labels, _ in got] == [labels for labels, _ in case.expected]:
            problems.append(f"{where}: annotations differ: expected {case.expected}, got {got}")
        else:
            problems.append(
                f"{where}: expected {_describe(case.expected)}, the evaluator fires {_describe(got)}"
            )
    return problems


def _describe(alerts: FiringSet) -> str:
    if not alerts:
        return "nothing"
    return "; ".join(str(dict(labels)) for labels, _ in alerts)


def _exp_alert(alert: Alert) -> dict[str, Any]:
    labels = {k: v for k, v in alert.labels.items() if k != "alertname"}
    return {"exp_labels": labels, "exp_annotations": dict(alert.annotations)}


def render_promtool_test(
    scenario: Scenario, timeline: Timeline, alert_names: list[str], rule_file: str
) -> str:
    """A ``promtool test rules`` file asserting the timeline's firing alerts.

    For a differential test only (does Prometheus fire what the evaluator fires under a spec
    with no hand-written answer?); it is never checked in as an expectation. For every alert
    name it asserts at t=0, at every step where the firing set changes, the step just before
    each change, and the last step: enough to pin *when*.
    """
    steps = sorted(timeline)
    cases: list[dict[str, Any]] = []
    for name in alert_names:
        sets = [sorted(_key(a) for a in timeline[t] if a.name == name) for t in steps]
        picks = {0, len(steps) - 1}
        for i in range(1, len(steps)):
            if sets[i] != sets[i - 1]:
                picks.update((i - 1, i))
        for i in sorted(picks):
            alerts = sorted((a for a in timeline[steps[i]] if a.name == name), key=_key)
            cases.append(
                {
                    "eval_time": format_duration(steps[i]) if steps[i] else "0s",
                    "alertname": name,
                    "exp_alerts": [_exp_alert(a) for a in alerts],
                }
            )
    document = {
        "rule_files": [rule_file],
        "evaluation_interval": format_duration(scenario.interval),
        "tests": [
            {
                "name": scenario.name,
                "interval": format_duration(scenario.interval),
                "input_series": [{"series": s, "values": v} for s, v in scenario.series],
                "alert_rule_test": cases,
            }
        ],
    }
    header = f"# The local evaluator's timeline for {scenario.name} (a differential test's input)\n"
    return header + yaml.safe_dump(document, sort_keys=False, width=1000, default_flow_style=False)


def _key(alert: Alert) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(alert.labels.items()))
