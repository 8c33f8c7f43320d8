"""Open-model load testing: arrival-rate schedules, honest latency, server-side memory slopes.

The library the CLI (`falcon loadtest`), the deploy gate, the canary and the drills call::

    from falcon_platform.loadtest import LoadOptions, LoadPlan, run_load
    result = run_load(LoadPlan.constant(rate=100, duration=20), "http://127.0.0.1:8000",
                      thresholds=["p99_ms < 50", "error_ratio < 0.01"])
    result.passed, result.to_dict()
"""

from falcon_platform.loadtest.plan import LoadPlan, Stage, parse_stages
from falcon_platform.loadtest.result import LoadResult
from falcon_platform.loadtest.run import (
    BackgroundLoad,
    LoadOptions,
    Progress,
    run_load,
    run_load_async,
    start_load,
)

__all__ = [
    "BackgroundLoad",
    "LoadOptions",
    "LoadPlan",
    "LoadResult",
    "Progress",
    "Stage",
    "parse_stages",
    "run_load",
    "run_load_async",
    "start_load",
]
