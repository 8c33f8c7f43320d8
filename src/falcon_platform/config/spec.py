"""The spec file (``falcon.yaml``): what an operator decides, validated by pydantic.

One spec renders Prometheus rules, the Grafana dashboard and Kubernetes/Argo
manifests, and configures the local supervisor's alert evaluator and canary
judge, so the single-machine and cluster modes cannot drift apart.

Durations are written as Prometheus writes them (``500ms``, ``30s``, ``5m``,
``1h``, ``3d``) or as a number of seconds, and are held as float seconds.
Unknown keys are errors (``extra="forbid"``); ``config.specfile`` turns them
into messages that suggest the closest valid key.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from falcon_platform.config.thresholds import parse_threshold

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(value: Any) -> float:
    """``"5m"`` -> 300.0; numbers are seconds. Raises ValueError with the accepted forms."""
    if isinstance(value, bool):
        raise ValueError(
            "a duration must be a number of seconds or a string like '30s', '5m', '1h'"
        )
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"duration {value!r} is negative")
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value.strip())
        if match:
            return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    raise ValueError(f"invalid duration {value!r}: write e.g. '500ms', '30s', '5m', '1h' or '3d'")


def format_duration(seconds: float) -> str:
    """Inverse of :func:`parse_duration` in Prometheus form: 300.0 -> ``"5m"``."""
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNIT_SECONDS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{round(seconds * 1000)}ms"


Duration = Annotated[float, BeforeValidator(parse_duration)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# The request-latency histogram's bucket bounds (seconds), for every Falcon process that
# exports one (workers, the supervisor's 503 responder). Here, beside the SLO, because the
# latency objective must be one of them: Prometheus counts "answered within X" only at a bound.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class SLOSpec(_Section):
    """Service level objectives; defaults are the seed postmortem's."""

    availability: float = Field(
        default=0.999, gt=0, lt=1, description="Fraction of non-5xx requests."
    )
    error_rate: float = Field(default=0.001, gt=0, lt=1, description="Error-rate objective.")
    latency_p95_ms: float = Field(default=500, gt=0)
    latency_target: float = Field(
        default=0.95, gt=0, lt=1, description="Share of requests under latency_p95_ms."
    )
    window: Duration = Field(default=30 * 86400.0, description="Objective window.")

    @field_validator("latency_p95_ms")
    @classmethod
    def _latency_is_a_bucket_bound(cls, value: float) -> float:
        """The latency rules count ``le="<objective>"``: any other value would match nothing."""
        if not any(abs(value - bound * 1000) < 1e-9 for bound in LATENCY_BUCKETS):
            bounds = ", ".join(f"{bound * 1000:g}" for bound in LATENCY_BUCKETS)
            raise ValueError(
                f"{value:g} ms is not a bound of the latency histogram, so no alert or SLO could "
                f"count requests within it; use one of {bounds} (ms)"
            )
        return value


class WorkerSpec(_Section):
    memory_limit_mb: int = Field(
        default=512, ge=0, description="0 turns the limit off (refused in prod)."
    )
    memory_soft_limit_percent: int = Field(
        default=80, ge=0, le=100, description="0 turns the soft limit off."
    )
    watchdog_interval: Duration = Field(default=0.2, gt=0, le=0.25)
    # While no worker is ready because workers are being recycled at the soft memory limit,
    # connections wait in the backlog this long (other waits: 2 s at most); after it, or at
    # once when no worker can be ready soon (back-off, crash loop, boot failures), the
    # supervisor answers 503. 10 s covers a recycle of every worker at once (the seed's leak
    # recycles them in step: drain ~5 s + fork ~2 s, measured by bench/leak_detection.py).
    no_ready_grace: Duration = Field(
        default=10.0, ge=0, le=60, description="Wait before answering 503 with no worker ready."
    )


class RestartSpec(_Section):
    """Back-off like Kubernetes' CrashLoopBackOff."""

    initial_backoff: Duration = 10.0
    max_backoff: Duration = 300.0
    reset_after: Duration = 600.0
    jitter: float = Field(default=0.1, ge=0, le=1)
    crash_loop_restarts: int = Field(
        default=5, ge=1, description="Restarts within crash_loop_window = crash loop."
    )
    crash_loop_window: Duration = 600.0
    boot_failure_max_tries: int = Field(default=3, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> RestartSpec:
        if self.initial_backoff > self.max_backoff:
            raise ValueError("restart.initial_backoff must not exceed restart.max_backoff")
        return self


class ProbeSpec(_Section):
    period: Duration = 2.0
    timeout: Duration = 1.0
    failure_threshold: int = Field(default=3, ge=1)
    kill_grace: Duration = 5.0
    startup_timeout: Duration = 120.0


class BurnWindow(_Section):
    """One multi-window burn-rate alert (Google SRE Workbook, ch. 5)."""

    severity: str = Field(pattern=r"^(page|ticket)$")
    factor: float = Field(gt=0)
    long: Duration
    short: Duration


def _default_burn_windows() -> list[BurnWindow]:
    return [
        BurnWindow(severity="page", factor=14.4, long=3600, short=300),
        BurnWindow(severity="page", factor=6, long=6 * 3600, short=1800),
        BurnWindow(severity="ticket", factor=1, long=3 * 86400, short=6 * 3600),
    ]


class AlertSpec(_Section):
    memory_percent: float = Field(default=80, gt=0, le=100)
    memory_for: Duration = 60.0
    error_rate_critical: float = Field(
        default=0.10, gt=0, le=1, description="The seed's rollback trigger."
    )
    error_rate_for: Duration = 60.0
    burn_windows: list[BurnWindow] = Field(default_factory=_default_burn_windows)
    low_traffic_min_rps: float = Field(
        default=0.1, ge=0, description="No page below this request rate."
    )
    request_log_pending_budget: int = Field(default=100_000, ge=1)
    evaluation_interval: Duration = 5.0
    # --- added by the alerting issue (6) ---------------------------------------------------
    error_rate_window: Duration = Field(
        default=60.0, gt=0, description="Rate window of the >10% alert."
    )
    # A leak that reaches the limit in 2 minutes spends under 30 s above 80%, so the
    # "80% for 1 m" alert can never fire before the OOM kill; this one extrapolates RSS.
    memory_growth_percent: float = Field(
        default=50, gt=0, le=100, description="Growth alert floor."
    )
    # Short on purpose: a worker's start-up ramp inside the window looks like growth.
    memory_growth_window: Duration = Field(default=60.0, gt=0, description="Regression window.")
    memory_growth_horizon: Duration = Field(
        default=300.0, gt=0, description="Limit reached within."
    )
    memory_growth_for: Duration = 30.0
    oom_kill_window: Duration = Field(
        default=300.0, gt=0, description="An OOM kill alerts this long."
    )
    config_change_window: Duration = Field(
        default=900.0, gt=0, description="Config-changed info this long."
    )
    no_ready_worker_for: Duration = Field(
        default=30.0, description="Grace for workers starting up."
    )
    # --- added by the hardening issue (11) -------------------------------------------------
    # A release whose workers are recycled at the soft memory limit more than this many times
    # within the window is leaking, not noisy: the seed's leak recycled each worker every few
    # seconds with no failure and no other alert.
    recycle_max: int = Field(
        default=3,
        ge=0,
        description="Soft-limit recycles of one release's workers allowed per window.",
    )
    recycle_window: Duration = Field(default=900.0, gt=0, description="Recycle-rate window.")
    supervisor_absent_for: Duration = Field(
        default=60.0, ge=0, description="Supervisor gone this long pages (Prometheus only)."
    )
    # --- added by the releases issue (14) --------------------------------------------------
    # The abort itself is over in seconds (the stable pool restored by Falcon); the page holds
    # this long so a person sees it and reads the release's verdict.
    canary_aborted_window: Duration = Field(
        default=900.0, gt=0, description="An aborted rollout alerts this long."
    )
    # The slow-model drill (p50 616 ms against the 500 ms objective) fired nothing before.
    latency_for: Duration = Field(
        default=60.0, ge=0, description="Latency objective missed this long (5m window)."
    )


class CanaryStep(_Section):
    weight: int = Field(ge=0, le=100, description="Percent of workers on the canary release.")
    pause: Duration = 60.0


def _default_canary_steps() -> list[CanaryStep]:
    return [
        CanaryStep(weight=10, pause=60),
        CanaryStep(weight=25, pause=60),
        CanaryStep(weight=50, pause=120),
    ]


class CanarySpec(_Section):
    """The canary: steps and every threshold of the judge (``releases.judge``); the
    Kubernetes AnalysisTemplate is rendered from the same numbers."""

    steps: list[CanaryStep] = Field(default_factory=_default_canary_steps)
    interval: Duration = Field(default=10.0, gt=0, description="Analysis every this long.")
    abort_error_rate: float = Field(
        default=0.10, gt=0, le=1, description="Errors above this abort at once."
    )
    abort_min_requests: int = Field(
        default=20, ge=1, description="Canary requests before the abort threshold applies."
    )
    max_error_rate_delta: float = Field(
        default=0.01, ge=0, le=1, description="Canary worse than stable by more: fail (z-test)."
    )
    max_latency_p95_ratio: float = Field(default=1.5, gt=1, description="Canary p95 / stable's.")
    latency_floor_ms: float = Field(
        default=100, ge=0, description="A canary p95 under this never fails the ratio."
    )
    max_memory_percent: float = Field(default=80, gt=0, le=100)
    max_memory_slope_mb_per_min: float = Field(
        default=100, gt=0, description="Steeper growth fails if it hits the limit within:"
    )
    memory_horizon: Duration = Field(
        default=600.0, gt=0, description="(and any growth hitting it before the step ends)."
    )
    memory_margin_mb: float = Field(
        default=50, ge=0, description="Growth counts once the canary is this far above stable."
    )
    min_requests: int = Field(
        default=100, ge=0, description="No verdict from fewer requests than this."
    )
    max_label_psi: float = Field(
        default=0.25, gt=0, description="Predicted-label shift vs stable (PSI) that fails."
    )
    max_confidence_drop: float = Field(
        default=0.15, gt=0, le=1, description="Mean confidence below stable's by more: fail."
    )
    inconclusive_timeout: Duration = Field(
        default=300.0, gt=0, description="A step still without a verdict this long aborts."
    )
    synthetic_rps: float = Field(
        default=0,
        ge=0,
        le=100,
        description="Synthetic req/s to a canary short of requests (0: off).",
    )
    synthetic_max_duration: Duration = Field(
        default=60.0, gt=0, description="Synthetic traffic at most this long per step."
    )


class GateSpec(_Section):
    """Before any user traffic: the config gate, then one worker of the new release on a
    private port under a short load test (``releases.gate``)."""

    config_check: bool = True
    load_test: bool = True
    load_test_duration: Duration = 20.0
    load_test_rps: float = Field(default=50, gt=0)
    max_rss_growth_mb: float = Field(default=50, ge=0)
    max_error_ratio: float = Field(default=0.01, ge=0, le=1)
    max_p99_ms: float = Field(default=500, gt=0)
    memory_horizon: Duration = Field(
        default=3600.0, gt=0, description="Refuse a release reaching its memory limit within."
    )
    memory_noise_mb: float = Field(
        default=5, ge=0, description="Growth below this is warm-up: no slope projected."
    )
    max_score_drop: float = Field(
        default=0.02, ge=0, le=1, description="Held-out macro F1 below stable's by more: refuse."
    )
    allow_label_change: bool = Field(
        default=False, description="A model with other labels than stable's may deploy."
    )


class LoadStage(_Section):
    """Ramp linearly to ``rate`` over ``duration`` (a 0s stage jumps to it at once)."""

    duration: Duration
    rate: float = Field(ge=0, description="Arrival rate (requests/s) at the end of the stage.")


class LoadProfile(_Section):
    """One load-test profile: an open-model arrival schedule and its pass/fail thresholds."""

    description: str = ""
    stages: list[LoadStage] = Field(min_length=1)
    start_rate: float | None = Field(
        default=None, ge=0, description="Rate at t=0; null = the first stage's rate (flat)."
    )
    endpoint: Literal["infer", "batch", "v2"] = "infer"
    texts: Literal["unique", "repeated", "corpus"] = "corpus"
    connections: int = Field(
        default=64, ge=1, le=10_000, description="Cap on requests in flight (more are dropped)."
    )
    timeout: Duration = Field(default=10.0, gt=0, description="Per request.")
    memory_warmup: Duration = Field(
        default=0.0, description="Memory samples before this are left out of the slope."
    )
    thresholds: list[str] = Field(default_factory=list)

    @field_validator("thresholds")
    @classmethod
    def _thresholds_parse(cls, value: list[str]) -> list[str]:
        return [parse_threshold(text).text for text in value]


def _default_load_profiles() -> dict[str, LoadProfile]:
    # Sized for a 2-core machine running Falcon and the generator side by side.
    return {
        "smoke": LoadProfile(
            description="CI and after every deploy: a few seconds, no error, a sane latency.",
            stages=[LoadStage(duration=5, rate=20)],
            texts="corpus",
            thresholds=[
                "error_ratio <= 0",
                "dropped <= 0",
                "p50_ms < 12",
                "p99_ms < 150",
                "achieved_rate_ratio > 0.95",
                "restarts <= 0",
            ],
        ),
        "baseline": LoadProfile(
            description="The expected steady load for a minute.",
            stages=[LoadStage(duration=60, rate=50)],
            memory_warmup=10,
            thresholds=[
                "error_ratio < 0.001",
                "dropped_ratio < 0.001",
                "p99_ms < 100",
                "memory_slope_mb_per_min < 5",
                "time_to_memory_limit_min > 60",
                "restarts <= 0",
            ],
        ),
        "stress": LoadProfile(
            description="Ramp well past the baseline; errors stay rare, nothing restarts.",
            start_rate=0,
            stages=[
                LoadStage(duration=30, rate=200),
                LoadStage(duration=60, rate=400),
                LoadStage(duration=30, rate=0),
            ],
            texts="unique",
            thresholds=["error_ratio < 0.01", "p99_ms < 500", "restarts <= 0", "oom_kills <= 0"],
        ),
        "spike": LoadProfile(
            description="A sudden 20x burst and back: shed rather than fall over.",
            stages=[
                LoadStage(duration=10, rate=20),
                LoadStage(duration=0, rate=400),
                LoadStage(duration=20, rate=400),
                LoadStage(duration=0, rate=20),
                LoadStage(duration=20, rate=20),
            ],
            thresholds=["error_ratio < 0.05", "restarts <= 0", "oom_kills <= 0"],
        ),
        "soak": LoadProfile(
            description="Ten minutes at the baseline rate: memory must stay flat.",
            stages=[LoadStage(duration=600, rate=50)],
            memory_warmup=60,
            thresholds=[
                "error_ratio < 0.001",
                "p99_ms < 100",
                "memory_slope_mb_per_min < 1",
                "time_to_memory_limit_min > 240",
                "restarts <= 0",
                "oom_kills <= 0",
            ],
        ),
    }


class CapacitySpec(_Section):
    """`falcon loadtest capacity`: the highest rate at which the SLO holds (bounded search)."""

    start_rate: float = Field(default=50, gt=0, description="First step (requests/s).")
    max_rate: float = Field(default=5000, gt=0, description="Never tries above this.")
    step_duration: Duration = Field(default=10.0, gt=0, description="Constant rate per step.")
    max_steps: int = Field(default=12, ge=2, le=50)
    precision: float = Field(
        default=0.05, gt=0, lt=1, description="Stop when bounds are this close (ratio)."
    )
    p99_ms: float | None = Field(
        default=None, gt=0, description="Extra p99 bound; null = the slo section's alone."
    )
    endpoint: Literal["infer", "batch", "v2"] = "infer"
    texts: Literal["unique", "repeated", "corpus"] = "corpus"
    connections: int = Field(default=256, ge=1, le=10_000)

    @model_validator(mode="after")
    def _ordered(self) -> CapacitySpec:
        if self.start_rate > self.max_rate:
            raise ValueError("loadtest.capacity.start_rate must not exceed max_rate")
        return self


class LoadTestSpec(_Section):
    """`falcon loadtest` profiles (yours are merged over these by name) and capacity search."""

    sample_interval: Duration = Field(
        default=1.0, gt=0, description="Control-API sampling of worker memory."
    )
    profiles: dict[str, LoadProfile] = Field(default_factory=_default_load_profiles)
    capacity: CapacitySpec = Field(default_factory=CapacitySpec)

    @field_validator("profiles", mode="before")
    @classmethod
    def _merge_over_defaults(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        for name in value:
            if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_-]{0,62}", name):
                raise ValueError(
                    f"profile name {name!r}: use lower-case letters, digits, '-' or '_'"
                )
        return {**_default_load_profiles(), **value}


class IncidentSpec(_Section):
    """When the supervisor opens incidents by itself (issue 15)."""

    auto_open: bool = Field(default=True, description="Open incidents from signals.")
    oom_burst_kills: int = Field(default=2, ge=1, description="OOM kills that make a burst.")
    oom_burst_window: Duration = Field(default=300.0, gt=0, description="Within this long.")
    reopen_window: Duration = Field(
        default=600.0, ge=0, description="A fault back this soon reopens the incident."
    )
    lookback: Duration = Field(
        default=600.0, ge=0, description="How far back the first related symptom is sought."
    )


class Spec(_Section):
    """The whole ``falcon.yaml``."""

    version: int = Field(default=1, ge=1, le=1)
    service: str = Field(default="falcon", pattern=r"^[a-z][a-z0-9-]{0,62}$")
    slo: SLOSpec = Field(default_factory=SLOSpec)
    workers: WorkerSpec = Field(default_factory=WorkerSpec)
    restart: RestartSpec = Field(default_factory=RestartSpec)
    probes: ProbeSpec = Field(default_factory=ProbeSpec)
    alerts: AlertSpec = Field(default_factory=AlertSpec)
    canary: CanarySpec = Field(default_factory=CanarySpec)
    gates: GateSpec = Field(default_factory=GateSpec)
    loadtest: LoadTestSpec = Field(default_factory=LoadTestSpec)
    incidents: IncidentSpec = Field(default_factory=IncidentSpec)
