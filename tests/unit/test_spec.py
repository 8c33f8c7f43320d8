"""The spec model: defaults from the seed postmortem, strict parsing."""

import pytest
from pydantic import ValidationError

from falcon_platform.config.spec import SLOSpec, Spec, format_duration, parse_duration


def test_defaults_are_the_seed_template_slos() -> None:
    spec = Spec()
    assert spec.slo.availability == 0.999
    assert spec.slo.latency_p95_ms == 500
    assert spec.alerts.error_rate_critical == 0.10
    assert spec.workers.memory_limit_mb == 512


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("30s", 30), ("5m", 300), ("1h", 3600), ("3d", 259200), (12, 12.0)],
)
def test_durations_parse_like_prometheus(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("seconds", [0.5, 30, 300, 3600, 259200, 90])
def test_format_duration_round_trips(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(ValidationError):
        Spec.model_validate({"slo": {"availabilty": 0.99}})


def test_bad_duration_names_the_accepted_forms() -> None:
    with pytest.raises(ValidationError, match="'30s'"):
        Spec.model_validate({"alerts": {"memory_for": "one minute"}})


@pytest.mark.parametrize("ms", [1, 2.5, 100, 250, 500, 1000, 10_000])
def test_a_latency_objective_on_a_histogram_bound_is_accepted(ms: float) -> None:
    assert SLOSpec(latency_p95_ms=ms).latency_p95_ms == ms


@pytest.mark.parametrize("ms", [300, 499, 750, 20_000])
def test_a_latency_objective_between_bounds_is_refused_with_the_bounds(ms: float) -> None:
    """Prometheus counts "within X" only at a bucket bound: 300 ms would match nothing."""
    with pytest.raises(ValidationError) as caught:
        SLOSpec(latency_p95_ms=ms)
    message = str(caught.value)
    assert f"{ms:g} ms is not a bound of the latency histogram" in message
    assert "250, 500, 1000" in message
