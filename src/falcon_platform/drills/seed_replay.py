"""`seed-incident`: the seed's leaking release replayed on the running deployment (I/O).

The seed shipped ``DEBUG_MEMORY_GROWTH=true`` (5 MB kept per request) to every worker at once
under ~100 RPS. The replay does the same through the only path that exists without the
releases feature: a rolling restart into ``FALCON_FAULTS=leak_mb_per_request=5`` (no gate,
no canary: the seed's way), at the seed's rate, and measures what Falcon's safety net did:
soft-limit recycles instead of OOM kills, the alert, requests failed, the incident and its
postmortem where the deployment has incidents. Its judge also returns the side-by-side table
(:mod:`falcon_platform.drills.seed`)::

    judge = seed_incident(session, drill_named("seed-incident"))
"""

from __future__ import annotations

import contextlib
from typing import Any

from falcon_platform.drills import judge as j
from falcon_platform.drills.model import Check, DrillDef
from falcon_platform.drills.scenarios import Judge, with_fault
from falcon_platform.drills.seed import ActNumbers, markdown_table, side_by_side
from falcon_platform.drills.session import Session
from falcon_platform.errors import FalconError

SEED_FAULT = "leak_mb_per_request=5"
ACT = "shipped as the seed was (no gate, no canary)"


def seed_incident(s: Session, drill: DrillDef) -> Judge:
    incidents = "/incidents" in s.client.routes()
    with_fault(
        s, SEED_FAULT,
        lambda evs: j.first_alert(evs, j.MEMORY_ALERTS, after=s.injected_at or s.started_at),
        drill.seconds,
    )  # fmt: skip
    postmortem = _postmortem(s) if incidents else None

    def judge(obs: j.Observation) -> tuple[list[Check], j.Timings]:
        checks, t = j.judge_memory_leak(obs, recycle_bound_s=drill.seconds)
        failed, total = j.failed_in(obs.answers, obs.injected_at, obs.restored_at)
        bad = [a for a in obs.answers if a[0] >= obs.injected_at and not j.ok_status(a[2])]
        if obs.restored_at is not None:
            bad = [a for a in bad if a[0] < obs.restored_at]
        act = ActNumbers(
            impact_s=(max(a[1] for a in bad) - min(a[0] for a in bad)) if bad else None,
            failed=failed,
            total=total,
            detect_s=t.detection_s,
            mitigate_s=t.mitigation_s,  # the first soft-limit recycle
            oom_kills=int(t.measured.get("oom_kills", 0)),
            manual_steps="none to keep serving; roll back (done by the drill)",
            postmortem=postmortem,
        )
        rows = side_by_side({ACT: act})
        t.measured["side_by_side"] = rows
        t.measured["side_by_side_markdown"] = markdown_table(rows)
        if incidents:
            opened = j.first_event(obs.events, "incident_opened", after=obs.injected_at)
            checks.append(
                Check("incident opened", "an incident is opened for the leak", opened is not None,
                      "never" if opened is None else str(opened["details"].get("incident"))),
            )  # fmt: skip
        return checks, t

    return judge


def _postmortem(s: Session) -> str | None:
    """The newest incident's postmortem location, where the deployment writes them."""
    # getattr: ControlClient.incidents comes with the incidents feature (issue 15).
    list_incidents: Any = getattr(s.client, "incidents", None)
    if list_incidents is None:
        return None
    with contextlib.suppress(FalconError, KeyError, IndexError, TypeError):
        newest: dict[str, Any] = list_incidents(limit=1)[0]
        return str(newest.get("postmortem_path") or f"falcon incident postmortem {newest['id']}")
    return None
