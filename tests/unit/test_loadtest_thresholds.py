"""Threshold syntax and verdicts: every operator, missing data fails, infinity passes '>'."""

from __future__ import annotations

import json
import math

import pytest

from falcon_platform.config.specfile import parse_spec_text
from falcon_platform.config.thresholds import METRICS, parse_threshold
from falcon_platform.loadtest.thresholds import evaluate


@pytest.mark.parametrize(
    ("text", "value", "passed"),
    [("p99_ms < 50", 49.9, True), ("p99_ms < 50", 50, False), ("p99_ms <= 50", 50, True),
     ("error_ratio > 0.5", 0.5, False), ("achieved_rate_ratio >= 0.98", 0.98, True),
     ("restarts == 0", 0, True), ("restarts == 0", 1, False),
     ("time_to_memory_limit_min > 60", math.inf, True),
     ("memory_slope_mb_per_min < 5", math.nan, False)],
)  # fmt: skip
def test_each_operator_judges_by_hand_table(text: str, value: float, passed: bool) -> None:
    metric = parse_threshold(text).metric
    [verdict] = evaluate([text], {metric: value})
    assert verdict.passed is passed


def test_missing_value_fails_with_the_reason() -> None:
    [v] = evaluate(["memory_slope_mb_per_min < 5"], {}, {"memory_slope_mb_per_min": "no API"})
    assert not v.passed
    assert v.shown() == "no data (no API)"
    assert "FAIL memory_slope_mb_per_min < 5" in v.line()


def test_json_has_no_infinity_but_says_never() -> None:
    [v] = evaluate(["time_to_memory_limit_min > 60"], {"time_to_memory_limit_min": math.inf})
    body = json.dumps(v.to_dict(), allow_nan=False)
    assert json.loads(body) == {"threshold": "time_to_memory_limit_min > 60",
                                "metric": "time_to_memory_limit_min", "op": ">", "limit": 60.0,
                                "value": None, "shown": "never", "passed": True}  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"),
    [("p99 < 50", "did you mean 'p99_ms'"), ("p99_ms << 50", "invalid threshold"),
     ("p99_ms < fifty", "invalid number"), ("p99_ms < nan", "NaN")],
)  # fmt: skip
def test_bad_thresholds_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_threshold(text)


def test_spec_refuses_a_misspelt_threshold_with_its_key_and_line() -> None:
    spec, problems = parse_spec_text(
        "loadtest:\n  profiles:\n    mine:\n      stages: [{duration: 5s, rate: 10}]\n"
        "      thresholds: ['p99 < 5']\n"
    )
    assert spec is None
    assert len(problems) == 1
    assert "loadtest.profiles.mine.thresholds" in problems[0]
    assert "did you mean 'p99_ms'" in problems[0]


def test_every_metric_is_documented_and_normalised() -> None:
    assert all(METRICS.values())
    assert parse_threshold("  p99_ms<50 ").text == "p99_ms < 50"
