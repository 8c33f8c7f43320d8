"""Run one drill against the deployment the settings point at (the shell around the judges).

Order (Chaos Toolkit's): applicability -> steady state before (refuse on an unhealthy
deployment) -> paced load -> injection -> wait for Falcon's answer -> restore -> steady state
after -> verdicts -> request-log rows -> ``drill`` journal event -> report::

    outcome = run_drill("kill-worker", settings, spec, DrillOptions(rps=20))
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from falcon_platform.client.control import ControlClient
from falcon_platform.config.settings import Settings
from falcon_platform.config.spec import Spec
from falcon_platform.drills import judge as j
from falcon_platform.drills.catalog import drill_named
from falcon_platform.drills.model import Check, DrillDef, DrillOutcome, Moment
from falcon_platform.drills.records import count_rows_lost, journal_drill
from falcon_platform.drills.scenarios import SCENARIOS
from falcon_platform.drills.session import DrillAbortedError, Session, steady_problem
from falcon_platform.errors import FalconError

STEADY_TIMEOUT_S = 120.0
# Journal rows worth a line in a drill's timeline.
TIMELINE_KINDS = frozenset(
    {
        "worker_exited", "worker_ready", "liveness_kill", "limit_recycle", "restart_scheduled",
        "alert_firing", "alert_resolved", "rolling_restart_started", "rolling_restart_finished",
        "service_unavailable", "service_available", "crash_loop_entered", "gate_refused",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class DrillOptions:
    rps: float = 20.0
    rps_default: bool = True  # --rps not given: drills with their own rate (the seed's) use it
    allow_faults: bool = False  # needed under the prod profile for drills that inject faults
    baseline_s: float = 3.0  # paced load before the injection (the hypothesis is checked on it)
    settle_s: float = 3.0  # paced load after the restore (must be failure-free)
    seconds: float | None = None  # override every drill's wait window (short CI drills)


def applicability(drill: DrillDef, settings: Settings, options: DrillOptions) -> tuple[str, str]:
    """("", "") when the drill can run here, else (status, why). Pure."""
    if "faults" in drill.needs and settings.profile == "prod" and not options.allow_faults:
        return "refused", (
            f"{drill.name} injects faults and the prod profile refuses them: run it on staging, "
            "or pass --allow-faults for a deliberate production drill"
        )
    if "redis" in drill.needs and settings.redis_url is None:
        return "not_applicable", "no Redis configured (FALCON_REDIS_URL is not set)"
    if "postgres" in drill.needs:
        url = settings.database_url.get_secret_value() if settings.database_url else ""
        if not url.startswith("postgresql"):
            return "not_applicable", "no PostgreSQL configured (FALCON_DATABASE_URL is not set)"
    if drill.name not in SCENARIOS:
        return "not_applicable", f"{drill.name} is not implemented yet on this deployment"
    return "", ""


def run_drill(
    name: str,
    settings: Settings,
    spec: Spec,
    options: DrillOptions | None = None,
    *,
    on_step: Callable[[str], None] | None = None,
) -> DrillOutcome:
    """Run drill ``name`` and return its outcome (the report is written by the caller)."""
    opts = options or DrillOptions()
    drill = drill_named(name)
    if opts.seconds is not None:
        drill = replace(drill, seconds=opts.seconds)
    out = DrillOutcome(name, "passed", profile=settings.profile, started_at=time.time())

    def note(what: str, ts: float) -> None:
        out.note(what, ts)
        if on_step is not None:
            on_step(what)

    status, why = applicability(drill, settings, opts)
    if status:
        out.status, out.reason = status, why  # type: ignore[assignment]
        out.finished_at = time.time()
        return out
    with ControlClient.from_settings(settings) as client:
        rps = drill.rps if drill.rps is not None and opts.rps_default else opts.rps
        session = Session(settings, spec, client, name=name, rps=rps,
                          started_at=out.started_at, note=note)  # fmt: skip
        out.target = session.url
        with session:
            _perform(drill, session, out, opts)
        out.finished_at = time.time()
        if out.injected_at is not None:
            journal_drill(settings, out)
    return out


def timeline_of(events: Sequence[Mapping[str, Any]]) -> list[Moment]:
    """Journal rows as timeline lines (pure): ``journal: worker_exited w1 (Signaled)``."""
    found = []
    for e in events:
        if e["kind"] not in TIMELINE_KINDS:
            continue
        d = e.get("details") or {}
        extra = d.get("name") or d.get("reason") or d.get("why") or ""
        who = " ".join(str(x) for x in (e.get("worker"), e.get("release")) if x)
        found.append(Moment(float(e["ts"]), f"journal: {e['kind']} {who} {extra}".strip()))
    return found


def _perform(drill: DrillDef, s: Session, out: DrillOutcome, opts: DrillOptions) -> None:
    if "releases" in drill.needs and "/deploy" not in s.client.routes():
        out.status = "not_applicable"
        out.reason = "this deployment has no deploys (POST /deploy, the releases feature)"
        return
    problem = steady_problem(s.status)
    if problem:
        out.status = "refused"
        out.reason = f"the deployment is not in its steady state ({problem}); fix it first"
        return
    s.start_load()
    time.sleep(opts.baseline_s)
    failed, total = s.failed_since(0.0)
    if total == 0 or failed > 0.01 * total:
        out.status = "refused"
        out.reason = (
            f"steady-state hypothesis failed before injecting: {failed} of {total} baseline "
            "requests failed; fix the deployment first"
        )
        return
    out.checks.append(
        j.check_steady(True, f"{failed} of {total} baseline requests failed", "before")
    )
    judge: Callable[[j.Observation], tuple[list[Check], j.Timings]] | None = None
    try:
        judge = SCENARIOS[drill.name](s, drill)
    except (DrillAbortedError, FalconError) as exc:
        out.status, out.reason = "failed", f"the drill could not complete: {exc.detail}"
    s.run_cleanups()  # restores whatever is still injected (a no-op after a clean scenario)
    ok, why = s.wait_steady(STEADY_TIMEOUT_S)
    if ok:  # the load never stopped: the hypothesis must hold on what follows the restore
        settle_from = time.time()
        time.sleep(opts.settle_s)
        failed, total = s.failed_since(settle_from)
        ok = total > 0 and failed == 0
        why = f"{failed} of {total} requests failed in the {opts.settle_s:g} s after restoring"
    s.stop_load()
    out.injected_at = s.injected_at
    out.measured.update(s.measured)
    events = s.events()
    out.timeline += timeline_of(events)
    if judge is not None and s.injected_at is not None:
        obs = j.Observation(s.injected_at, events, s.answers(), s.restored_at, s.rollback_at)
        checks, timings = judge(obs)
        out.checks += checks
        out.detection_s, out.mitigation_s = timings.detection_s, timings.mitigation_s
        out.measured.update(timings.measured)
    out.checks.append(j.check_steady(ok, why, "after"))
    answers = s.answers()
    out.requests, out.failed = len(answers), sum(1 for a in answers if not j.ok_status(a[2]))
    if out.failed:  # 0 = no HTTP answer (time-out, reset)
        by_status: dict[str, int] = {}
        for a in answers:
            if not j.ok_status(a[2]):
                by_status[str(a[2] or "no answer")] = by_status.get(str(a[2] or "no answer"), 0) + 1
        out.measured["failed_by_status"] = by_status
    lost, why_unknown = count_rows_lost(s.settings, s.prefix, s.ok_request_ids())
    out.rows_lost = lost
    out.checks.append(j.check_rows(lost, why_unknown))
    missed = [c for c in out.checks if not c.met]
    if missed and out.status == "passed":
        out.status = "failed"
        out.reason = "; ".join(c.line() for c in missed)
