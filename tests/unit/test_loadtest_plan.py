"""Arrival schedules: counts are the area under the rate curve, times invert it exactly."""

from __future__ import annotations

import math
from itertools import islice, pairwise

import pytest

from falcon_platform.errors import InvalidInputError
from falcon_platform.loadtest.plan import LoadPlan, Stage, parse_stages


def test_constant_rate_is_evenly_spaced_and_counts_rate_times_duration() -> None:
    times = list(LoadPlan.constant(rate=100, duration=10).arrivals())
    assert len(times) == 1000
    assert times[0] == 0.0
    gaps = {round(b - a, 9) for a, b in pairwise(times)}
    assert gaps == {0.01}
    assert times[-1] < 10.0


def test_linear_ramp_from_zero_follows_the_square_root_of_the_area() -> None:
    """0 -> 100 req/s over 10 s: 500 arrivals; the i-th where 5 t^2 = i, t = sqrt(i / 5)."""
    plan = LoadPlan((Stage(10, 100),), start_rate=0)
    times = list(plan.arrivals())
    assert len(times) == 500
    for i in (1, 20, 125, 499):
        assert times[i] == pytest.approx(math.sqrt(i / 5), rel=1e-9)


def test_k6_style_stages_count_the_area_of_each_ramp() -> None:
    """'30s:50,60s:200,30s:0' from 0: 0.5*30*50 + 60*(50+200)/2 + 0.5*30*200 = 11,250."""
    plan = LoadPlan(parse_stages("30s:50,60s:200,30s:0"), start_rate=0)
    assert plan.duration_s == 120
    assert plan.expected_arrivals() == pytest.approx(11_250)
    times = list(plan.arrivals())
    assert len(times) == 11_250
    assert sum(1 for t in times if t < 30) == 750
    assert sum(1 for t in times if 30 <= t < 90) == 7_500
    assert times == sorted(times)
    assert plan.rate_at(15) == pytest.approx(25)
    assert plan.rate_at(60) == pytest.approx(125)
    assert plan.rate_at(105) == pytest.approx(100)


def test_a_zero_length_stage_jumps_at_once() -> None:
    """20 req/s for 10 s, jump to 400 for 20 s: 200 + 8,000 arrivals, 2.5 ms apart after 10 s."""
    plan = LoadPlan((Stage(10, 20), Stage(0, 400), Stage(20, 400)))
    times = list(plan.arrivals())
    assert len(times) == 8_200
    after = [t for t in times if t >= 10]
    assert after[1] - after[0] == pytest.approx(0.0025)
    assert plan.peak_rate == 400


def test_open_ended_plan_never_ends() -> None:
    plan = LoadPlan.open_ended(50)
    assert math.isinf(plan.duration_s)
    assert list(islice(plan.arrivals(), 3)) == [0.0, 0.02, 0.04]


@pytest.mark.parametrize(
    ("text", "message"),
    [("30s", "DURATION:RATE"), ("30s:fast", "fast"), ("soon:5", "invalid duration"),
     ("30s:-5", ">= 0")],
)  # fmt: skip
def test_bad_stages_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        parse_stages(text)


def test_constant_needs_a_positive_rate_and_duration() -> None:
    with pytest.raises(InvalidInputError, match="must be > 0"):
        LoadPlan.constant(rate=0, duration=10)
