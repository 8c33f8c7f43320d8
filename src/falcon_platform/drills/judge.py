"""Drill verdicts (pure): journal rows + what the load generator saw -> checks and timings.

Every function takes plain data (event dicts as the control API returns them, answers as
``(sent, answered, status)`` wall-clock tuples, status 0 for a transport error) and a bound,
and returns :class:`Check` values; nothing here does I/O::

    obs = Observation(injected_at=t, events=events, answers=answers)
    checks, timings = judge_kill(obs, victim_pid=4242, restart_bound_s=30)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from falcon_platform.drills.model import Check

Event = Mapping[str, Any]
Answer = tuple[float, float, int]  # (sent wall, answered wall, HTTP status or 0)

# Exits the supervisor asked for: not a worker being killed.
PLANNED_EXIT_REASONS = frozenset({"Stopped", "Recycled"})
ERROR_ALERTS = ("FalconErrorBudgetBurn", "FalconHighErrorRate")
# An incident the drill caused: a new one, or one still open (or recently closed) that the
# drill's signal joined or reopened (the watcher dedupes by trigger).
INCIDENT_KINDS = ("incident_opened", "incident_joined", "incident_reopened")
MEMORY_ALERTS = ("FalconWorkerMemoryGrowth", "FalconWorkerRecycling", "FalconWorkerMemoryHigh")
LATENCY_ALERTS = ("FalconHighLatency",)


@dataclass(frozen=True, slots=True)
class Observation:
    injected_at: float
    events: Sequence[Event]
    answers: Sequence[Answer]
    restored_at: float | None = None
    rollback_at: float | None = None  # the drill began undoing the injection (a rollback)


@dataclass(slots=True)
class Timings:
    detection_s: float | None = None
    mitigation_s: float | None = None
    measured: dict[str, Any] = field(default_factory=dict)


def ok_status(status: int) -> bool:
    return 200 <= status < 300


def first_event(
    events: Iterable[Event],
    kind: str,
    *,
    after: float,
    where: Callable[[Event], bool] = lambda e: True,
) -> Event | None:
    """The earliest event of ``kind`` at or after ``after`` matching ``where``."""
    found = [e for e in events if e["kind"] == kind and e["ts"] >= after and where(e)]
    return min(found, key=lambda e: float(e["ts"])) if found else None


def first_incident(events: Iterable[Event], *, after: float) -> Event | None:
    found = [e for e in events if e["kind"] in INCIDENT_KINDS and e["ts"] >= after]
    return min(found, key=lambda e: float(e["ts"])) if found else None


def first_alert(events: Iterable[Event], names: Sequence[str], *, after: float) -> Event | None:
    return first_event(
        events, "alert_firing", after=after, where=lambda e: e["details"].get("name") in names
    )


def kills(events: Iterable[Event], *, after: float, until: float | None = None) -> list[Event]:
    """Workers that died unplanned (signal, OOM, liveness, crash) in ``[after, until]``."""
    return [
        e
        for e in events
        if e["kind"] == "worker_exited"
        and e["ts"] >= after
        and (until is None or e["ts"] <= until)
        and e["details"].get("reason") not in PLANNED_EXIT_REASONS
    ]


def oom_kills(events: Iterable[Event], *, after: float, until: float | None = None) -> list[Event]:
    return [
        e
        for e in events
        if e["kind"] == "worker_exited"
        and e["ts"] >= after
        and (until is None or e["ts"] <= until)
        and e["details"].get("oom_killed")
    ]


def in_flight_at(answers: Iterable[Answer], t: float) -> int:
    """Requests sent before ``t`` and answered (or failed) after it."""
    return sum(1 for sent, answered, _ in answers if sent <= t < answered)


def failed_in(answers: Iterable[Answer], start: float, end: float | None = None) -> tuple[int, int]:
    """(failed, total) among requests sent in ``[start, end)``."""
    chosen = [s for sent, _, s in answers if sent >= start and (end is None or sent < end)]
    return sum(1 for s in chosen if not ok_status(s)), len(chosen)


def quantile_ms(answers: Iterable[Answer], q: float, start: float, end: float | None) -> float:
    """Latency quantile (ms) of the answered requests sent in ``[start, end)``."""
    lat = sorted(
        (answered - sent) * 1000
        for sent, answered, s in answers
        if s and sent >= start and (end is None or sent < end)
    )
    if not lat:
        return 0.0
    return lat[min(len(lat) - 1, max(0, round(q * len(lat)) - 1))]


def _within(
    what: str, event: Event | None, since: float, bound_s: float
) -> tuple[Check, float | None]:
    if event is None:
        return Check(what, f"{what} within {bound_s:g} s", False, "never happened"), None
    took = float(event["ts"]) - since
    return Check(what, f"{what} within {bound_s:g} s", took <= bound_s, f"{took:.2f} s"), took


def check_failed_bounded(obs: Observation, bound: int, why: str) -> Check:
    failed, total = failed_in(obs.answers, obs.injected_at, obs.restored_at)
    return Check(
        "failed_bounded",
        f"failed requests <= {bound} ({why})",
        failed <= bound,
        f"{failed} failed of {total}",
    )


def judge_kill(
    obs: Observation, *, victim_pid: int, victim_worker: str, restart_bound_s: float
) -> tuple[list[Check], Timings]:
    """SIGKILL one worker: the exit is seen, a replacement is ready within the bound, and no
    more requests fail than were in flight when it died."""
    t = Timings()
    exit_ = first_event(
        obs.events, "worker_exited", after=obs.injected_at - 1,
        where=lambda e: e["details"].get("pid") == victim_pid,
    )  # fmt: skip
    seen, t.detection_s = _within("exit noticed", exit_, obs.injected_at, 5.0)
    ready = None
    if exit_ is not None:
        ready = first_event(
            obs.events, "worker_ready", after=float(exit_["ts"]),
            where=lambda e: e["worker"] == victim_worker,
        )  # fmt: skip
    replaced, t.mitigation_s = _within("replacement ready", ready, obs.injected_at, restart_bound_s)
    bound = in_flight_at(obs.answers, obs.injected_at)
    t.measured = {"in_flight_at_kill": bound, "victim": victim_worker, "pid": victim_pid}
    if exit_ is not None:
        t.measured["exit"] = {k: exit_["details"].get(k) for k in ("signal", "reason", "exit_code")}
    return [seen, replaced, check_failed_bounded(obs, bound, "in flight at the kill")], t


def judge_hang(
    obs: Observation, *, victim_pid: int, victim_worker: str, kill_bound_s: float,
    restart_bound_s: float,
) -> tuple[list[Check], Timings]:  # fmt: skip
    """SIGSTOP one worker: the liveness probe kills it within the bound and it is replaced."""
    t = Timings()
    killed = first_event(
        obs.events, "liveness_kill", after=obs.injected_at - 1,
        where=lambda e: e["details"].get("pid") == victim_pid,
    )  # fmt: skip
    live, t.detection_s = _within("liveness kill", killed, obs.injected_at, kill_bound_s)
    ready = None
    if killed is not None:
        ready = first_event(
            obs.events, "worker_ready", after=float(killed["ts"]),
            where=lambda e: e["worker"] == victim_worker,
        )  # fmt: skip
    replaced, t.mitigation_s = _within(
        "replacement ready", ready, obs.injected_at, kill_bound_s + restart_bound_s
    )
    bound = in_flight_at(obs.answers, obs.injected_at)
    t.measured = {"in_flight_at_stop": bound, "victim": victim_worker, "pid": victim_pid}
    if killed is not None:
        t.measured["why"] = killed["details"].get("why")
    return [live, replaced, check_failed_bounded(obs, bound, "in flight at the stop")], t


def judge_error_spike(
    obs: Observation, *, alert_bound_s: float, ratio: float, incidents: bool = False
) -> tuple[list[Check], Timings]:
    """faults error_ratio: the failures are real, an error alert fires within the bound, and
    (on a deployment with incidents) an incident is opened for it."""
    t = Timings()
    failed, total = failed_in(obs.answers, obs.injected_at, obs.restored_at)
    took = Check(
        "injected",
        f"the fault took effect (about {ratio:.0%} of requests failing)",
        total > 0 and failed >= 0.25 * ratio * total,
        f"{failed} failed of {total}",
    )
    alert = first_alert(obs.events, ERROR_ALERTS, after=obs.injected_at)
    fired, t.detection_s = _within("error alert fired", alert, obs.injected_at, alert_bound_s)
    if alert is not None:
        t.measured["alert"] = alert["details"].get("name")
    if obs.restored_at is not None:
        t.mitigation_s = obs.restored_at - obs.injected_at
    checks = [took, fired]
    if incidents:
        opened = first_incident(obs.events, after=obs.injected_at)
        check, _ = _within("incident opened", opened, obs.injected_at, alert_bound_s + 10)
        checks.append(check)
        if opened is not None:
            t.measured["incident"] = opened["details"].get("incident")
            done = first_event(
                obs.events, "incident_mitigated", after=float(opened["ts"]),
                where=lambda e: e["details"].get("incident") == t.measured["incident"],
            )  # fmt: skip
            t.measured["incident_mitigated"] = done is not None
    return checks, t


def judge_memory_leak(obs: Observation, *, recycle_bound_s: float) -> tuple[list[Check], Timings]:
    """A leaking release: recycled at the soft limit before any OOM kill, and a memory alert."""
    t = Timings()
    recycle = first_event(obs.events, "limit_recycle", after=obs.injected_at)
    recycled, t.mitigation_s = _within(
        "soft-limit recycle", recycle, obs.injected_at, recycle_bound_s
    )
    ooms = oom_kills(obs.events, after=obs.injected_at, until=obs.restored_at)
    no_oom = Check(
        "no_oom_kill", "no OOM kill while the leak ran", not ooms, f"{len(ooms)} OOM kills"
    )
    alert = first_alert(obs.events, MEMORY_ALERTS, after=obs.injected_at)
    alerted = Check(
        "memory_alert",
        "a memory alert fired before any OOM kill",
        alert is not None and (not ooms or alert["ts"] < min(e["ts"] for e in ooms)),
        "never" if alert is None else
        f"{alert['details'].get('name')} at +{float(alert['ts']) - obs.injected_at:.1f} s",
    )  # fmt: skip
    if alert is not None:
        t.detection_s = float(alert["ts"]) - obs.injected_at
    # Until the drill's own rollback: its interplay with recycles is reported, not judged here.
    leak_end = obs.rollback_at or obs.restored_at
    failed, total = failed_in(obs.answers, obs.injected_at, leak_end)
    hidden = Check(
        "users_unaffected", "at most 1% of requests failed while the leak ran (recycles hide it)",
        failed <= 0.01 * total, f"{failed} failed of {total}",
    )  # fmt: skip
    if obs.rollback_at is not None:
        t_failed, t_total = failed_in(obs.answers, obs.rollback_at, obs.restored_at)
        t.measured["failed_during_rollback"] = f"{t_failed} of {t_total}"
    recycles = [
        e for e in obs.events if e["kind"] == "limit_recycle" and e["ts"] >= obs.injected_at
    ]
    t.measured.update({"recycles": len(recycles), "oom_kills": len(ooms)})
    return [recycled, no_oom, alerted, hidden], t


def judge_degraded(
    obs: Observation,
    *,
    min_p50_ms: float | None,
    max_failed_ratio: float,
    latency_alert_bound_s: float | None = None,
) -> tuple[list[Check], Timings]:
    """Slow or CPU-bound answers (or a flood): nobody is killed, (almost) nothing fails; with
    ``latency_alert_bound_s``, the latency alert fires within it."""
    t = Timings()
    dead = kills(obs.events, after=obs.injected_at, until=obs.restored_at)
    dead += [e for e in obs.events if e["kind"] == "liveness_kill" and e["ts"] >= obs.injected_at
             and (obs.restored_at is None or e["ts"] <= obs.restored_at)]  # fmt: skip
    checks = [
        Check("no_worker_killed", "no worker killed", not dead,
              ", ".join(f"{e['worker']} {e['kind']}" for e in dead) or "none"),
    ]  # fmt: skip
    failed, total = failed_in(obs.answers, obs.injected_at, obs.restored_at)
    checks.append(
        Check(
            "failed_bounded",
            f"at most {max_failed_ratio:.1%} of requests failed",
            total > 0 and failed <= max_failed_ratio * total,
            f"{failed} failed of {total}",
        )
    )
    p50 = quantile_ms(obs.answers, 0.5, obs.injected_at, obs.restored_at)
    p99 = quantile_ms(obs.answers, 0.99, obs.injected_at, obs.restored_at)
    t.measured = {"p50_ms": round(p50, 1), "p99_ms": round(p99, 1)}
    if min_p50_ms is not None:
        checks.append(
            Check("injected", f"the fault took effect (p50 >= {min_p50_ms:g} ms)",
                  p50 >= min_p50_ms, f"p50 {p50:.0f} ms, p99 {p99:.0f} ms"),
        )  # fmt: skip
    if latency_alert_bound_s is not None:
        alert = first_alert(obs.events, LATENCY_ALERTS, after=obs.injected_at)
        fired, t.detection_s = _within(
            "latency alert fired", alert, obs.injected_at, latency_alert_bound_s
        )
        checks.append(fired)
        if alert is not None:
            t.measured["alert"] = alert["details"].get("name")
    return checks, t


def check_rows(rows_lost: int | None, why_unknown: str) -> Check:
    return Check(
        "rows_lost", "0 request-log rows lost (every 2xx has exactly one row)",
        rows_lost == 0, why_unknown if rows_lost is None else f"{rows_lost} lost",
    )  # fmt: skip


def check_steady(ok: bool, detail: str, when: str) -> Check:
    return Check(f"steady_{when}", f"steady state {when}", ok, detail)
