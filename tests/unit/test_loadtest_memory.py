"""Memory slope by least squares with its standard error, across restarts; time to limit."""

from __future__ import annotations

import math
import random

import pytest

from falcon_platform.loadtest.memory import MB, MemorySample, fit_slope, minutes_to_limit


def test_an_exact_line_gives_its_slope_and_no_error() -> None:
    """100 MB + 1 MB/s for 60 s = 60 MB/min."""
    samples = [MemorySample(t, (100 + t) * MB, 1) for t in range(60)]
    fit = fit_slope(samples)
    assert fit is not None
    assert fit.slope_mb_per_min == pytest.approx(60)
    assert fit.stderr_mb_per_min == pytest.approx(0, abs=1e-9)
    assert (fit.points, fit.segments) == (60, 1)


def test_noise_gives_an_error_bar_that_covers_the_true_slope() -> None:
    """Flat 150 MB with +-2 MB noise: slope ~0 and |slope| < 2 stderr (seeded)."""
    rng = random.Random(3)
    samples = [MemorySample(t, int((150 + rng.uniform(-2, 2)) * MB), 1) for t in range(120)]
    fit = fit_slope(samples)
    assert fit is not None
    low, high = fit.interval()
    assert low < 0 < high
    assert abs(fit.slope_mb_per_min) < 1
    assert "±" in fit.describe()


def test_a_worker_killed_and_restarted_keeps_one_slope() -> None:
    """A saw-tooth (grow 10 MB/s, killed at 300 MB, back at 100 MB) is 600 MB/min, not ~0."""
    samples = []
    for t in range(60):
        segment = t // 20  # restarted every 20 s
        samples.append(MemorySample(t, (100 + 10 * (t % 20)) * MB, 1000 + segment))
    fit = fit_slope(samples)
    assert fit is not None
    assert fit.slope_mb_per_min == pytest.approx(600)
    assert fit.segments == 3
    naive = fit_slope([MemorySample(s.t, s.bytes, 0) for s in samples])
    assert naive is not None
    assert naive.slope_mb_per_min < 100  # what a fit ignoring restarts would have said


def test_too_few_points_give_no_fit() -> None:
    assert fit_slope([MemorySample(0, MB, 1), MemorySample(1, MB, 1)]) is None
    assert fit_slope([MemorySample(t, MB, t) for t in range(10)]) is None  # all single


@pytest.mark.parametrize(
    ("last", "limit", "slope", "minutes"),
    [(112, 512, 100, 4.0), (500, 512, 6, 2.0), (600, 512, 5, 0.0), (100, 512, 0, math.inf),
     (100, 512, -3, math.inf), (100, None, 50, math.inf)],
)  # fmt: skip
def test_minutes_to_limit(last: float, limit: float | None, slope: float, minutes: float) -> None:
    assert minutes_to_limit(last, limit, slope) == minutes
