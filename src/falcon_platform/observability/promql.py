"""PromQL's arithmetic over plain samples, so the local evaluator computes what Prometheus does.

Written by hand because no maintained Python library evaluates PromQL functions over
in-memory samples; each function follows Prometheus 2.x (``promql/functions.go``):
ranges are closed ``[t - range, t]``, instant lookups look back ``lookback`` seconds,
``rate``/``increase`` handle counter resets and extrapolate to the window edges::

    >>> samples = [(0.0, 0.0), (15.0, 15.0), (30.0, 30.0), (45.0, 45.0), (60.0, 60.0)]
    >>> rate(samples, 60.0, 60.0)
    1.0
    >>> increase([(0.0, 5.0), (30.0, 9.0), (60.0, 2.0)], 60.0, 60.0)  # reset to 0 between
    6.0

Samples are ``(epoch seconds, value)`` tuples in ascending time order; a NaN value is a
staleness marker, as in Prometheus's storage.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence

Sample = tuple[float, float]


def window(samples: Sequence[Sample], start: float, end: float) -> Sequence[Sample]:
    """The samples with ``start <= t <= end`` (Prometheus 2.x closed range), NaN included."""
    lo = bisect.bisect_left(samples, (start, -math.inf))
    hi = bisect.bisect_right(samples, (end, math.inf))
    return samples[lo:hi]


def _range(samples: Sequence[Sample], start: float, end: float) -> Sequence[Sample]:
    # A range vector never contains staleness markers (NaN here); copy only if there are any.
    points = window(samples, start, end)
    if any(v != v for _, v in points):  # NaN is the only value unequal to itself
        return [s for s in points if s[1] == s[1]]
    return points


def latest(samples: Sequence[Sample], now: float, lookback: float) -> float | None:
    """An instant-vector lookup: the newest sample in ``[now - lookback, now]``.

    A NaN sample is a staleness marker (the series ended): the lookup finds nothing.
    """
    points = window(samples, now - lookback, now)
    if not points or math.isnan(points[-1][1]):
        return None
    return points[-1][1]


def _extrapolated_delta(
    samples: Sequence[Sample], now: float, rng: float, *, is_rate: bool
) -> float | None:
    points = _range(samples, now - rng, now)
    if len(points) < 2:
        return None
    first_t, first_v = points[0]
    last_t, last_v = points[-1]
    result = last_v - first_v
    values = [v for _, v in points]
    for previous, value in itertools.pairwise(values):
        if value < previous:  # a counter reset: add what was counted before it
            result += previous
    to_start = first_t - (now - rng)
    to_end = now - last_t
    sampled = last_t - first_t
    average_gap = sampled / (len(points) - 1)
    if result > 0 and first_v >= 0:
        # Counters start at zero: never extrapolate below it.
        to_start = min(to_start, sampled * (first_v / result))
    threshold = average_gap * 1.1
    interval = sampled
    interval += to_start if to_start < threshold else average_gap / 2
    interval += to_end if to_end < threshold else average_gap / 2
    factor = interval / sampled
    if is_rate:
        factor /= rng
    return result * factor


def increase(samples: Sequence[Sample], now: float, rng: float) -> float | None:
    """``increase(counter[rng])`` at ``now``; None when fewer than two samples."""
    return _extrapolated_delta(samples, now, rng, is_rate=False)


def rate(samples: Sequence[Sample], now: float, rng: float) -> float | None:
    """``rate(counter[rng])`` at ``now`` in per-second units; None when fewer than two samples."""
    return _extrapolated_delta(samples, now, rng, is_rate=True)


def predict_linear(
    samples: Sequence[Sample], now: float, rng: float, horizon: float
) -> float | None:
    """``predict_linear(gauge[rng], horizon)``: least squares, intercept at ``now``."""
    points = _range(samples, now - rng, now)
    if len(points) < 2:
        return None
    first_value = points[0][1]
    if all(value == first_value for _, value in points):
        return first_value
    n = float(len(points))
    sum_x = sum(ts - now for ts, _ in points)
    sum_y = sum(value for _, value in points)
    sum_xy = sum((ts - now) * value for ts, value in points)
    sum_x2 = sum((ts - now) ** 2 for ts, _ in points)
    var_x = sum_x2 - sum_x * sum_x / n
    if var_x == 0:
        return None
    slope = (sum_xy - sum_x * sum_y / n) / var_x
    intercept = sum_y / n - slope * sum_x / n
    return intercept + slope * horizon


def max_over_time(samples: Sequence[Sample], now: float, rng: float) -> float | None:
    """``max_over_time(gauge[rng])``; None when the range is empty."""
    values = [value for _, value in _range(samples, now - rng, now)]
    return max(values) if values else None
