"""From a profile in ``falcon.yaml`` (and command-line overrides) to a plan, options, thresholds.

Pure::

    job = resolve(spec.loadtest, "smoke")                                   # the profile as is
    job = resolve(spec.loadtest, None, Overrides(rate=50, duration_s=30))   # ad hoc
    job = resolve(spec.loadtest, "baseline", Overrides(thresholds=("p99_ms < 20",)))
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from falcon_platform.config.spec import LoadProfile, LoadTestSpec
from falcon_platform.config.thresholds import parse_threshold
from falcon_platform.errors import InvalidInputError
from falcon_platform.loadtest.plan import LoadPlan, Stage, parse_stages
from falcon_platform.loadtest.requests import Endpoint, Texts
from falcon_platform.loadtest.run import LoadOptions


@dataclass(frozen=True, slots=True)
class Overrides:
    rate: float | None = None
    duration_s: float | None = None
    stages: str | None = None
    endpoint: Endpoint | None = None
    texts: Texts | None = None
    connections: int | None = None
    timeout_s: float | None = None
    thresholds: tuple[str, ...] | None = None  # replaces the profile's when given
    closed_loop: bool = False
    memory_warmup_s: float | None = None


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    plan: LoadPlan
    options: LoadOptions
    thresholds: tuple[str, ...]
    memory_warmup_s: float = 0.0


def plan_of(profile: LoadProfile) -> LoadPlan:
    stages = tuple(Stage(s.duration, s.rate) for s in profile.stages)
    return LoadPlan(stages, start_rate=profile.start_rate)


def resolve(spec: LoadTestSpec, name: str | None, over: Overrides | None = None) -> Job:
    """The job to run; InvalidInputError says which flag or profile is wrong and the fix."""
    over = over or Overrides()
    if (over.rate is None) != (over.duration_s is None):
        raise InvalidInputError("--rate and --duration go together, e.g. --rate 50 --duration 30s")
    if over.rate is not None and over.stages is not None:
        raise InvalidInputError("give either --rate/--duration or --stages, not both")
    profile: LoadProfile | None = None
    if name is not None:
        profile = spec.profiles.get(name)
        if profile is None:
            raise InvalidInputError(
                f"no load-test profile {name!r} in the spec; profiles: "
                f"{', '.join(sorted(spec.profiles))} (add yours under loadtest.profiles)"
            )
    elif over.rate is None and over.stages is None:
        raise InvalidInputError(
            f"name a profile ({', '.join(sorted(spec.profiles))}) or give --rate R --duration D "
            "or --stages '30s:50,60s:200'"
        )
    if over.rate is not None and over.duration_s is not None:
        plan = LoadPlan.constant(over.rate, over.duration_s)
    elif over.stages is not None:
        plan = LoadPlan(parse_stages(over.stages), start_rate=0)
    else:
        assert profile is not None
        plan = plan_of(profile)
    base = LoadOptions(
        endpoint=profile.endpoint if profile else "infer",
        texts=profile.texts if profile else "corpus",
        connections=profile.connections if profile else 64,
        timeout_s=profile.timeout if profile else 10.0,
    )
    options = replace(
        base,
        endpoint=over.endpoint or base.endpoint,
        texts=over.texts or base.texts,
        connections=over.connections or base.connections,
        timeout_s=over.timeout_s or base.timeout_s,
        model="closed" if over.closed_loop else "open",
    )
    if over.thresholds is not None:
        thresholds = tuple(_checked(t) for t in over.thresholds)
    else:
        thresholds = tuple(profile.thresholds) if profile else ()
    warmup = over.memory_warmup_s
    if warmup is None:
        warmup = profile.memory_warmup if profile else 0.0
    return Job(name or "ad hoc", plan, options, thresholds, warmup)


def _checked(text: str) -> str:
    try:
        return parse_threshold(text).text
    except ValueError as exc:
        raise InvalidInputError(f"--threshold: {exc}") from None
