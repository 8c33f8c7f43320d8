"""Release drills: the seed's leaking release deployed through the gate, then forced past it
(I/O through ``POST /deploy`` and ``GET /rollout`` of the releases feature, issue 14).

``bad-deploy``: the gate must refuse it, no worker of it ever starts, no user request fails.
``bad-deploy-forced``: with ``skip_gate`` the canary takes its share, is judged, aborted and
rolled back before any OOM kill, with at most 1% of requests failed::

    judge = bad_deploy_forced(session, drill_named("bad-deploy-forced"))
"""

from __future__ import annotations

import time
from typing import Any

from falcon_platform.drills import judge as j
from falcon_platform.drills.model import Check, DrillDef
from falcon_platform.drills.scenarios import Judge
from falcon_platform.drills.session import DrillAbortedError, Session

SEED_ENV = {"FALCON_FAULTS": "leak_mb_per_request=5"}
DEPLOY_TIMEOUT_S = 300.0
CANARY_ALERT = "FalconCanaryAborted"


def _canary_alert(release: object) -> Any:
    """``events -> the alert_firing of FalconCanaryAborted for release`` (None: not yet)."""
    return lambda events, after=0.0: j.first_event(
        events, "alert_firing", after=after,
        where=lambda e: e["details"].get("name") == CANARY_ALERT and e.get("release") == release,
    )  # fmt: skip


def has_releases(s: Session) -> bool:
    return "/deploy" in s.client.routes()


def deploy_and_wait(s: Session, *, skip_gate: str | None, what: str) -> dict[str, Any]:
    """Deploy the seed's release and follow ``GET /rollout`` until it is done; its state."""
    # getattr: ControlClient.deploy/rollout come with the releases feature (issue 14).
    deploy: Any = getattr(s.client, "deploy", None)
    rollout: Any = getattr(s.client, "rollout", None)
    if deploy is None or rollout is None:
        raise DrillAbortedError("this Falcon has no deploys (ControlClient.deploy)")
    s.injected_at = time.time()
    body = deploy(SEED_ENV, reason=f"drill {s.name}: {what}", created_by="falcon drill",
                  skip_gate=skip_gate, allow_faults=True)  # fmt: skip
    release = str((body.get("rollout") or {}).get("release"))
    s.note(f"deployed the seed's release {release} ({what})", s.injected_at)
    deadline = time.monotonic() + DEPLOY_TIMEOUT_S
    while time.monotonic() < deadline:
        state: dict[str, Any] = rollout().get("rollout") or {}
        if state.get("release") == release and state.get("done"):
            s.restored_at = time.time()
            s.note(f"rollout of {release}: {state.get('phase')} ({state.get('reason')})",
                   s.restored_at)  # fmt: skip
            s.measured["rollout"] = {k: state.get(k) for k in (
                "release", "from_release", "phase", "reason", "canary_workers", "total_workers",
                "seconds_from_first_canary_traffic_to_abort", "canary_peak_memory_mb",
                "memory_limit_mb", "analyses")}  # fmt: skip
            if state.get("phase") == "aborted":
                # The page comes at the next evaluation after the abort: wait for it, bounded.
                s.wait_events(_canary_alert(release), kinds=["alert_firing"],
                              timeout=2 * s.spec.alerts.evaluation_interval + 15.0)  # fmt: skip
            return state
        time.sleep(0.5)
    raise DrillAbortedError(f"the rollout of {release} was not done within {DEPLOY_TIMEOUT_S:g} s")


def judge_refused(obs: j.Observation, state: dict[str, Any]) -> tuple[list[Check], j.Timings]:
    """Pure: the gate refused it, no worker of it started, no request failed."""
    t = j.Timings()
    release = state.get("release")
    refused = j.first_event(obs.events, "gate_refused", after=obs.injected_at - 1,
                            where=lambda e: e.get("release") == release)  # fmt: skip
    started = [e for e in obs.events if e["kind"] == "worker_started" and e["release"] == release]
    failed, total = j.failed_in(obs.answers, obs.injected_at, obs.restored_at)
    if refused is not None:
        t.detection_s = t.mitigation_s = float(refused["ts"]) - obs.injected_at
    t.measured = {"gate": state.get("gate")}
    return [
        Check("refused_by_gate", "the gate refuses the release", state.get("phase") == "refused",
              f"{state.get('phase')}: {state.get('reason')}"),
        Check("never_started", "no worker of it ever starts", not started,
              f"{len(started)} workers started"),
        Check("users_unaffected", "0 requests failed", failed == 0 and total > 0,
              f"{failed} failed of {total}"),
    ], t  # fmt: skip


def judge_aborted(
    obs: j.Observation, state: dict[str, Any], *, incidents: bool
) -> tuple[list[Check], j.Timings]:
    """Pure: the canary was aborted and rolled back before any OOM kill, <= 1% failed, and
    FalconCanaryAborted paged for the release."""
    t = j.Timings()
    release = state.get("release")
    first_traffic = state.get("first_canary_traffic_at") or obs.injected_at
    aborted = j.first_event(obs.events, "rollout_aborted", after=obs.injected_at - 1,
                            where=lambda e: e.get("release") == release)  # fmt: skip
    back = j.first_event(obs.events, "rollback_finished", after=obs.injected_at - 1)
    ooms = [e for e in j.oom_kills(obs.events, after=obs.injected_at) if e["release"] == release]
    failed, total = j.failed_in(obs.answers, obs.injected_at, obs.restored_at)
    if aborted is not None:
        t.detection_s = float(aborted["ts"]) - float(first_traffic)
    if back is not None:
        t.mitigation_s = float(back["ts"]) - float(first_traffic)
    checks = [
        Check("aborted", "the canary is aborted and rolled back", state.get("phase") == "aborted",
              f"{state.get('phase')}: {state.get('reason')}"),
        Check("no_oom_kill", "no OOM kill of the canary", not ooms, f"{len(ooms)} OOM kills"),
        Check("users_unaffected", "at most 1% of requests failed", total > 0 and failed <= 0.01 * total,
              f"{failed} failed of {total}"),
    ]  # fmt: skip
    paged = _canary_alert(release)(obs.events, obs.injected_at)
    checks.append(Check(
        "canary alert fired", f"{CANARY_ALERT} fires for the release", paged is not None,
        "never" if paged is None else f"+{float(paged['ts']) - obs.injected_at:.1f} s",
    ))  # fmt: skip
    if incidents:
        opened = j.first_incident(obs.events, after=obs.injected_at)
        checks.append(Check("incident opened", "an incident is opened", opened is not None,
                            "never" if opened is None else str(opened["details"].get("incident"))))  # fmt: skip
        if opened is not None:
            t.measured["incident"] = opened["details"].get("incident")
    t.measured["oom_kills"] = len(ooms)
    return checks, t


def bad_deploy(s: Session, drill: DrillDef) -> Judge:
    state = deploy_and_wait(s, skip_gate=None, what="through the gate")
    return lambda obs: judge_refused(obs, state)


def bad_deploy_forced(s: Session, drill: DrillDef) -> Judge:
    incidents = "/incidents" in s.client.routes()
    state = deploy_and_wait(s, skip_gate=f"drill {s.name}: prove the canary", what="gate skipped")
    return lambda obs: judge_aborted(obs, state, incidents=incidents)
