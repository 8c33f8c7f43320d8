"""What to send and when: stages of arrival rate, and the exact arrival times (pure).

An open model (k6's ramping-arrival-rate, wrk2's constant rate): the arrival times are fixed
before the run and do not depend on how fast the server answers::

    plan = LoadPlan.constant(rate=200, duration=10)          # 2,000 arrivals, one every 5 ms
    plan = LoadPlan(stages=parse_stages("30s:50,60s:200,30s:0"), start_rate=0)
    for t in plan.arrivals(): ...                            # seconds since the start, ascending

Within a stage the rate moves linearly from the previous stage's rate to the stage's own, so
the expected number of arrivals is the area under the rate curve; the i-th arrival is at the
time where that area reaches i (inverting a linear or quadratic cumulative count).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

from falcon_platform.config.spec import parse_duration
from falcon_platform.errors import InvalidInputError


@dataclass(frozen=True, slots=True)
class Stage:
    duration_s: float
    rate: float  # requests/s reached at the end of the stage


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """Stages of arrival rate; ``start_rate`` None = the first stage's rate (a flat start).

    ``until_stopped``: one constant stage repeated until the caller stops the run (test
    helpers that load a server while they break it).
    """

    stages: tuple[Stage, ...]
    start_rate: float | None = None
    until_stopped: bool = field(default=False)

    def __post_init__(self) -> None:
        if not self.stages:
            raise InvalidInputError("a load plan needs at least one stage, e.g. '30s:50'")
        for stage in self.stages:
            if stage.duration_s < 0 or stage.rate < 0 or not math.isfinite(stage.rate):
                raise InvalidInputError(
                    f"stage {stage.duration_s:g}s:{stage.rate:g}: durations and rates must be "
                    "finite and >= 0"
                )
        if self.start_rate is not None and self.start_rate < 0:
            raise InvalidInputError("start rate must be >= 0")

    @classmethod
    def constant(cls, rate: float, duration: float) -> LoadPlan:
        if rate <= 0 or duration <= 0:
            raise InvalidInputError(
                f"--rate {rate:g} --duration {duration:g}s: both must be > 0 (e.g. --rate 50 "
                "--duration 30s)"
            )
        return cls((Stage(duration, rate),), start_rate=rate)

    @classmethod
    def open_ended(cls, rate: float) -> LoadPlan:
        """Constant ``rate`` until stopped (``Run.stop()``)."""
        if rate <= 0:
            raise InvalidInputError(f"rate {rate:g}: must be > 0")
        return cls((Stage(1.0, rate),), start_rate=rate, until_stopped=True)

    @property
    def duration_s(self) -> float:
        return math.inf if self.until_stopped else sum(s.duration_s for s in self.stages)

    @property
    def initial_rate(self) -> float:
        return self.stages[0].rate if self.start_rate is None else self.start_rate

    @property
    def peak_rate(self) -> float:
        return max([self.initial_rate, *(s.rate for s in self.stages)])

    def rate_at(self, t: float) -> float:
        """Target arrival rate at ``t`` seconds (piecewise linear)."""
        begin, rate = 0.0, self.initial_rate
        for stage in self.stages:
            end = begin + stage.duration_s
            if t < end and stage.duration_s > 0:
                return rate + (stage.rate - rate) * (t - begin) / stage.duration_s
            begin, rate = end, stage.rate
        return rate

    def expected_arrivals(self, until: float | None = None) -> float:
        """Area under the rate curve from 0 to ``until`` (default: the whole plan)."""
        end_t = self.duration_s if until is None else until
        total, begin, rate = 0.0, 0.0, self.initial_rate
        for stage in self.stages:
            if begin >= end_t:
                break
            span = min(stage.duration_s, end_t - begin)
            if stage.duration_s > 0:
                slope = (stage.rate - rate) / stage.duration_s
                total += rate * span + slope * span * span / 2
            begin, rate = begin + stage.duration_s, stage.rate
        return total

    def arrivals(self) -> Iterator[float]:
        """Arrival times in seconds since the start, ascending (infinite when until_stopped)."""
        if self.until_stopped:
            interval = 1.0 / self.stages[0].rate
            i = 0
            while True:
                yield i * interval
                i += 1
        done = 0.0  # arrivals completed before the current stage (area so far)
        n = 0  # next arrival index: it happens where the area reaches n
        begin, rate = 0.0, self.initial_rate
        for stage in self.stages:
            d = stage.duration_s
            if d > 0:
                a = (stage.rate - rate) / d  # rate(t) = rate + a * t within the stage
                area = rate * d + a * d * d / 2
                while n <= done + area - 1e-9:
                    yield begin + _time_for_area(n - done, rate, a)
                    n += 1
                done += area
            begin, rate = begin + d, stage.rate


def _time_for_area(target: float, r0: float, a: float) -> float:
    """Smallest t >= 0 with r0*t + a*t^2/2 == target (the area under a linear rate)."""
    if target <= 0:
        return 0.0
    if abs(a) < 1e-12:
        return target / r0
    # a/2 t^2 + r0 t - target = 0; the numerically stable root
    disc = max(0.0, r0 * r0 + 2 * a * target)
    return 2 * target / (r0 + math.sqrt(disc))


def parse_stages(text: str) -> tuple[Stage, ...]:
    """``"30s:50,60s:200,30s:0"`` -> stages (ramp to 50 over 30 s, to 200 over 60 s, down)."""
    stages: list[Stage] = []
    for part in (p.strip() for p in text.split(",")):
        duration, sep, rate = part.partition(":")
        if not sep:
            raise InvalidInputError(
                f"stage {part!r}: write DURATION:RATE, e.g. --stages '30s:50,60s:200,30s:0'"
            )
        try:
            stages.append(Stage(parse_duration(duration.strip()), float(rate)))
        except ValueError as exc:
            raise InvalidInputError(f"stage {part!r}: {exc}") from None
    return LoadPlan(tuple(stages), start_rate=0).stages
