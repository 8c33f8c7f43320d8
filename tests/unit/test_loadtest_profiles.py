"""Profiles from falcon.yaml and command-line overrides -> plan, options, thresholds."""

from __future__ import annotations

import pytest

from falcon_platform.config.spec import Spec
from falcon_platform.config.specfile import parse_spec_text
from falcon_platform.errors import InvalidInputError
from falcon_platform.loadtest.profiles import Overrides, resolve

SPEC = Spec()


def test_shipped_profiles_exist_and_smoke_is_a_few_seconds() -> None:
    assert {"smoke", "baseline", "stress", "spike", "soak"} <= set(SPEC.loadtest.profiles)
    job = resolve(SPEC.loadtest, "smoke")
    assert job.plan.duration_s <= 10
    assert "error_ratio <= 0" in job.thresholds
    assert job.options.model == "open"


def test_rate_and_duration_make_a_constant_ad_hoc_plan() -> None:
    job = resolve(SPEC.loadtest, None, Overrides(rate=50, duration_s=30, texts="unique"))
    assert job.plan.expected_arrivals() == pytest.approx(1500)
    assert job.options.texts == "unique"
    assert job.thresholds == ()


def test_threshold_flags_replace_the_profiles() -> None:
    job = resolve(SPEC.loadtest, "baseline", Overrides(thresholds=("p99_ms<20",)))
    assert job.thresholds == ("p99_ms < 20",)


@pytest.mark.parametrize(
    ("name", "over", "message"),
    [(None, Overrides(), "name a profile"), ("nope", Overrides(), "no load-test profile 'nope'"),
     (None, Overrides(rate=5), "go together"),
     (None, Overrides(rate=5, duration_s=3, stages="3s:5"), "not both"),
     ("smoke", Overrides(thresholds=("p99 < 5",)), "did you mean 'p99_ms'")],
)  # fmt: skip
def test_bad_requests_say_how_to_fix_them(name: str | None, over: Overrides, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        resolve(SPEC.loadtest, name, over)


def test_a_users_profile_is_merged_over_the_shipped_ones() -> None:
    spec, problems = parse_spec_text(
        "loadtest:\n  profiles:\n    gate:\n      stages: [{duration: 20s, rate: 100}]\n"
        "      thresholds: ['memory_slope_mb_per_min < 5']\n"
        "    smoke:\n      stages: [{duration: 2s, rate: 5}]\n"
    )
    assert problems == []
    assert spec is not None
    profiles = spec.loadtest.profiles
    assert {"gate", "smoke", "baseline", "soak"} <= set(profiles)
    assert profiles["smoke"].stages[0].duration == 2  # the user's smoke replaces the default
    assert resolve(spec.loadtest, "gate").plan.expected_arrivals() == pytest.approx(2000)
