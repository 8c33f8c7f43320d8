"""Every drill, as data: its steady-state hypothesis, its injection, what Falcon promises.

The runner (:mod:`falcon_platform.drills.runner`) performs a drill by name; the bounds written
here are the defaults for a deployment with the default spec, and the runner tightens or
widens them from the deployment's own spec (back-off, probe period, evaluation interval).
"""

from __future__ import annotations

from falcon_platform.drills.model import DrillDef, Expectation
from falcon_platform.errors import InvalidInputError

STEADY = (
    "every desired worker is ready, the supervisor is healthy, no rolling restart or fault is "
    "in progress, and >= 99% of a paced load succeeds"
)
ROWS = Expectation("rows_lost", "0 request-log rows lost (every 2xx has exactly one row)")
NO_KILL = Expectation("no_worker_killed", "no worker is killed")

CATALOG: tuple[DrillDef, ...] = (
    DrillDef(
        "kill-worker",
        "SIGKILL one ready worker under load",
        STEADY,
        "kill -9 the ready worker with the fewest restarts",
        (
            Expectation("exit noticed", "the supervisor journals the exit", 5.0),
            Expectation("replacement ready", "a replacement is ready within back-off + boot", 40.0),
            Expectation("failed_bounded", "failed requests <= those in flight at the kill"),
            ROWS,
        ),
        needs=("signals",),
        seconds=60.0,
    ),
    DrillDef(
        "hang-worker",
        "SIGSTOP one ready worker (a hang): the liveness probe must kill and replace it",
        STEADY,
        "kill -STOP the ready worker with the fewest restarts",
        (
            Expectation("liveness kill", "killed by the liveness probe", 20.0),
            Expectation("replacement ready", "replaced within the kill bound + back-off + boot"),
            Expectation("failed_bounded", "failed requests <= those in flight at the stop"),
            ROWS,
        ),
        needs=("signals",),
        seconds=90.0,
    ),
    DrillDef(
        "memory-leak",
        "a release leaking per request (the seed's fault, 5 MB each)",
        STEADY,
        "roll out FALCON_FAULTS=leak_mb_per_request=5, then roll back",
        (
            Expectation("soft-limit recycle", "workers recycled at the soft limit", 60.0),
            Expectation("no_oom_kill", "no OOM kill while the leak runs"),
            Expectation("memory_alert", "a memory alert fires before any OOM kill"),
            Expectation("users_unaffected", "at most 1% of requests fail while it leaks"),
            ROWS,
        ),
        needs=("faults",),
        seconds=60.0,
    ),
    DrillDef(
        "error-spike",
        "a release failing 30% of requests",
        STEADY,
        "roll out FALCON_FAULTS=error_ratio=0.3, then roll back",
        (
            Expectation("injected", "the failures reach the clients"),
            Expectation(
                "error alert fired",
                "a burn-rate or error-rate alert fires (within error_rate_for + 2 evaluations + 20 s)",
                90.0,
            ),
            Expectation("incident opened", "an incident is opened (deployments with incidents)"),
            ROWS,
        ),
        needs=("faults",),
        seconds=60.0,
    ),
    DrillDef(
        "cpu-spike",
        "a release burning 20 ms of CPU per request (blocking each worker's loop)",
        STEADY,
        "roll out FALCON_FAULTS=cpu_burn_ms=20, then roll back",
        (NO_KILL, Expectation("failed_bounded", "at most 1% of requests fail"), ROWS),
        needs=("faults",),
        seconds=10.0,
    ),
    DrillDef(
        "slow-model",
        "a release answering 600 ms late (above the 500 ms p95 objective)",
        STEADY,
        "roll out FALCON_FAULTS=latency_ms=600, then roll back",
        (
            NO_KILL,
            Expectation("failed_bounded", "at most 1% of requests fail"),
            Expectation("injected", "clients see the latency (p50 >= 600 ms)"),
            Expectation(
                "latency alert fired",
                "FalconHighLatency fires (within its 5m window + latency_for + 2 evaluations "
                "+ 20 s; 15 s + latency_for when the traffic before was as heavy)",
                390.0,
            ),
            ROWS,
        ),
        needs=("faults",),
        seconds=10.0,
    ),
    DrillDef(
        "connection-flood",
        "idle TCP connections flood the public port",
        STEADY,
        "hold up to 2,000 idle sockets open on the public port (never sending a byte)",
        (NO_KILL, Expectation("failed_bounded", "at most 1% of the paced requests fail"), ROWS),
        seconds=10.0,
    ),
    DrillDef(
        "bad-deploy",
        "the seed's leaking release deployed normally (falcon deploy)",
        STEADY,
        "POST /deploy with FALCON_FAULTS=leak_mb_per_request=5",
        (
            Expectation("refused_by_gate", "the gate refuses it (memory slope)"),
            Expectation("never_started", "no worker of it ever starts"),
            Expectation("users_unaffected", "0 requests failed"),
            ROWS,
        ),
        needs=("faults", "releases"),
        seconds=300.0,
    ),
    DrillDef(
        "bad-deploy-forced",
        "the same release forced past the gate (--skip-gate)",
        STEADY,
        "POST /deploy with FALCON_FAULTS=leak_mb_per_request=5 and skip_gate",
        (
            Expectation("aborted", "the canary is aborted and rolled back"),
            Expectation("no_oom_kill", "no OOM kill of the canary"),
            Expectation("canary alert fired", "FalconCanaryAborted fires for the release"),
            Expectation("users_unaffected", "at most 1% of requests fail"),
            Expectation("incident opened", "an incident is opened (deployments with incidents)"),
            ROWS,
        ),
        needs=("faults", "releases"),
        seconds=300.0,
    ),
    DrillDef(
        "seed-incident",
        "the seed incident replayed: its leaking release (5 MB per request) at the seed's rate",
        STEADY,
        "roll out FALCON_FAULTS=leak_mb_per_request=5 to every worker (as the seed did), "
        "then roll back; Falcon's numbers beside the seed's",
        (
            Expectation("soft-limit recycle", "workers recycled at the soft limit", 120.0),
            Expectation("no_oom_kill", "no OOM kill while the leak runs"),
            Expectation("memory_alert", "a memory alert fires before any OOM kill"),
            Expectation("users_unaffected", "at most 1% of requests fail while it leaks"),
            Expectation("incident opened", "an incident is opened (deployments with incidents)"),
            ROWS,
        ),
        needs=("faults",),
        seconds=120.0,
        rps=100.0,
    ),
    DrillDef(
        "redis-down",
        "Redis stops answering (CLIENT PAUSE) for 5 s",
        STEADY,
        "CLIENT PAUSE 5000 ALL on the deployment's Redis",
        (Expectation("failed_bounded", "0 failed requests"), ROWS),
        needs=("redis",),
        seconds=5.0,
    ),
    DrillDef(
        "postgres-down",
        "PostgreSQL refuses connections for 5 s",
        STEADY,
        "ALTER DATABASE ... ALLOW_CONNECTIONS false and end Falcon's sessions, for 5 s",
        (Expectation("failed_bounded", "0 failed requests"), ROWS),
        needs=("postgres",),
        seconds=5.0,
    ),
    DrillDef(
        "postgres-slow",
        "PostgreSQL's request log is locked for 5 s (every insert waits)",
        STEADY,
        "LOCK TABLE request_log IN ACCESS EXCLUSIVE MODE for 5 s",
        (Expectation("failed_bounded", "0 failed requests"), ROWS),
        needs=("postgres",),
        seconds=5.0,
    ),
)

_BY_NAME = {d.name: d for d in CATALOG}


def drill_named(name: str) -> DrillDef:
    """The drill called ``name``; a clear error listing the drills otherwise."""
    found = _BY_NAME.get(name)
    if found is None:
        raise InvalidInputError(
            f"no drill named {name!r}; `falcon drill list` shows them: {', '.join(_BY_NAME)}"
        )
    return found
