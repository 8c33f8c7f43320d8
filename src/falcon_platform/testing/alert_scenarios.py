"""Alert scenarios shared by promtool and the local evaluator.

A scenario (``tests/promtool/scenarios/*.yml``) is synthetic series written in
promtool's ``input_series`` notation plus what must fire and when. The same series
feed :class:`~falcon_platform.testing.FakeSLISource` for :class:`AlertEvaluator`, and
:func:`render_promtool_test` turns the evaluator's timeline into a ``promtool test
rules`` file, so Prometheus is asked to agree with the local evaluator step by step::

    scenario = load_scenario(Path("tests/promtool/scenarios/seed.yml"))
    timeline = run_evaluator(scenario, Spec())
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

    def steps(self) -> list[float]:
        count = int(self.duration // self.interval)
        return [i * self.interval for i in range(count + 1)]


def load_scenario(path: Path) -> Scenario:
    raw: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
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
        series=[(s["series"], str(s["values"])) for s in raw["input_series"]],
        expect=expect,
        profile=raw.get("profile", "dev"),
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


def _exp_alert(alert: Alert) -> dict[str, Any]:
    labels = {k: v for k, v in alert.labels.items() if k != "alertname"}
    return {"exp_labels": labels, "exp_annotations": dict(alert.annotations)}


def render_promtool_test(
    scenario: Scenario, timeline: Timeline, alert_names: list[str], rule_file: str
) -> str:
    """A ``promtool test rules`` file asserting the timeline's firing alerts.

    For every alert name it asserts at t=0, at every step where the firing set changes,
    the step just before each change, and the last step: enough to pin *when*.
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
    header = (
        f"# Generated from tests/promtool/scenarios/{scenario.name}.yml by the local evaluator\n"
        "# (FALCON_UPDATE_GOLDEN=1 pytest tests/unit/test_alerting_scenarios.py). promtool must agree.\n"
        + "".join(f"# {line}\n" for line in scenario.description.splitlines())
    )
    return header + yaml.safe_dump(document, sort_keys=False, width=1000, default_flow_style=False)


def _key(alert: Alert) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(alert.labels.items()))
