"""`seed-incident`: the seed's story told on the running deployment (I/O), under steady load.

With deploys (the releases feature), in two acts, as the issue tells it:

1. the seed's release (``leak_mb_per_request=5``, as the debug flag did) is deployed normally:
   the gate refuses it; users affected: 0;
2. the same release is forced with ``skip_gate``: the canary takes its share, is judged,
   aborted and rolled back before its first OOM kill; the incident is opened, and its
   postmortem written.

Without deploys, one act: the release is pushed to every worker as the seed did (a rolling
restart, no gate, no canary) and the soft-limit recycles must keep users unaffected. Either
way the judge returns Falcon's numbers beside the seed's (:mod:`falcon_platform.drills.seed`).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from falcon_platform.drills import judge as j
from falcon_platform.drills.deploys import (
    deploy_and_wait,
    has_releases,
    judge_aborted,
    judge_refused,
)
from falcon_platform.drills.model import Check, DrillDef
from falcon_platform.drills.scenarios import Judge, with_fault
from falcon_platform.drills.seed import ActNumbers, markdown_table, side_by_side
from falcon_platform.drills.session import Session
from falcon_platform.errors import FalconError

SEED_FAULT = "leak_mb_per_request=5"
PUSHED = "pushed as the seed was (no gate, no canary)"
ACT1, ACT2 = "act 1: deployed (gate)", "act 2: forced (--skip-gate)"


def seed_incident(s: Session, drill: DrillDef) -> Judge:
    incidents = "/incidents" in s.client.routes()
    if has_releases(s):
        return _two_acts(s, drill, incidents)
    with_fault(
        s, SEED_FAULT,
        lambda evs: j.first_alert(evs, j.MEMORY_ALERTS, after=s.injected_at or s.started_at),
        drill.seconds,
    )  # fmt: skip
    postmortem = _postmortem(s, s.injected_at or s.started_at) if incidents else None

    def judge(obs: j.Observation) -> tuple[list[Check], j.Timings]:
        checks, t = j.judge_memory_leak(obs, recycle_bound_s=drill.seconds)
        act = _act(obs, obs.injected_at, obs.restored_at, t, "none to keep serving; "
                   "roll back (done by the drill)", postmortem)  # fmt: skip
        _table(t, {PUSHED: act})
        if incidents:
            checks.append(_incident_check(obs, obs.injected_at))
        return checks, t

    return judge


def _two_acts(s: Session, drill: DrillDef, incidents: bool) -> Judge:
    one = deploy_and_wait(s, skip_gate=None, what="through the gate")
    w1 = (s.injected_at or time.time(), s.restored_at or time.time())
    s.wait_steady(60.0)
    two = deploy_and_wait(s, skip_gate="drill seed-incident: prove the canary", what="gate skipped")
    w2 = (s.injected_at or time.time(), s.restored_at or time.time())
    s.injected_at = w1[0]
    postmortem = _postmortem(s, w2[0]) if incidents else None

    def judge(obs: j.Observation) -> tuple[list[Check], j.Timings]:
        o1 = j.Observation(w1[0], obs.events, obs.answers, w1[1])
        o2 = j.Observation(w2[0], obs.events, obs.answers, w2[1])
        c1, t1 = judge_refused(o1, one)
        c2, t2 = judge_aborted(o2, two, incidents=incidents)
        acts = {
            ACT1: _act(o1, w1[0], w1[1], t1, "none", None),
            ACT2: _act(o2, w2[0], w2[1], t2, "none", postmortem),
        }
        t = j.Timings(t2.detection_s, t2.mitigation_s, {"act1": t1.measured, "act2": t2.measured})
        _table(t, acts)
        checks = [Check(f"act1 {c.key}", f"act 1: {c.text}", c.met, c.measured) for c in c1]
        checks += [Check(f"act2 {c.key}", f"act 2: {c.text}", c.met, c.measured) for c in c2]
        return checks, t

    return judge


def _act(obs: j.Observation, start: float, end: float | None, t: j.Timings, manual: str,
         postmortem: str | None) -> ActNumbers:  # fmt: skip
    failed, total = j.failed_in(obs.answers, start, end)
    bad = [a for a in obs.answers
           if a[0] >= start and (end is None or a[0] < end) and not j.ok_status(a[2])]  # fmt: skip
    ooms = j.oom_kills(obs.events, after=start, until=end)
    return ActNumbers(
        impact_s=(max(a[1] for a in bad) - min(a[0] for a in bad)) if bad else None,
        failed=failed, total=total, detect_s=t.detection_s, mitigate_s=t.mitigation_s,
        oom_kills=len(ooms), manual_steps=manual, postmortem=postmortem,
    )  # fmt: skip


def _table(t: j.Timings, acts: dict[str, ActNumbers]) -> None:
    rows = side_by_side(acts)
    t.measured["side_by_side"] = rows
    t.measured["side_by_side_markdown"] = markdown_table(rows)


def _incident_check(obs: j.Observation, after: float) -> Check:
    opened = j.first_incident(obs.events, after=after)
    return Check("incident opened", "an incident is opened for the leak", opened is not None,
                 "never" if opened is None else str(opened["details"].get("incident")))  # fmt: skip


def _postmortem(s: Session, since: float) -> str | None:
    """Write the postmortem of the incident the drill caused (the newest opened since
    ``since``) under ``<FALCON_HOME>/data/drills/postmortems``; its Markdown path."""
    from falcon_platform.incidents.postmortem import write_postmortem

    deadline = time.monotonic() + 30  # the watcher opens incidents from the journal
    while time.monotonic() < deadline:
        with contextlib.suppress(FalconError, KeyError, TypeError, IndexError, OSError):
            hit = j.first_incident(s.events(j.INCIDENT_KINDS), after=since)
            if hit is not None:
                incident = str(hit["details"]["incident"])
                bundle = s.client.incident(incident, part="/bundle")
                written = write_postmortem(bundle, s.settings.data_dir / "drills" / "postmortems")
                md = [str(p) for p in written if Path(p).suffix == ".md"]
                s.note(f"postmortem of {incident} written", time.time())
                return md[0] if md else str(written[0])
        time.sleep(1.0)
    return None
