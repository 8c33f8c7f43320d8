"""How each drill injects its failure, waits for Falcon's answer and restores (I/O).

A scenario acts through the :class:`Session` while the load runs, sets ``injected_at`` and
``restored_at``, and returns the pure judge to apply once the load has stopped::

    judge = SCENARIOS["kill-worker"](session, drill)
    checks, timings = judge(Observation(session.injected_at, events, answers, restored_at))
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from falcon_platform.drills import judge as j
from falcon_platform.drills.model import Check, DrillDef
from falcon_platform.drills.session import DrillAbortedError, Session
from falcon_platform.observability.alert_defs import LATENCY_WINDOW

Judge = Callable[[j.Observation], tuple[list[Check], j.Timings]]
Scenario = Callable[[Session, DrillDef], Judge]
BOOT_SLACK_S = 30.0  # fork/boot of a replacement on a busy 2-core machine
ROLLOUT_TIMEOUT_S = 180.0


def restart_bound(s: Session) -> float:
    r = s.spec.restart
    return r.initial_backoff * (1 + r.jitter) + BOOT_SLACK_S


def _signal_worker(s: Session, drill: DrillDef, sig: signal.Signals) -> dict[str, Any]:
    victim = s.pick_victim()
    pid = int(victim["pid"])
    s.injected_at = time.time()
    os.kill(pid, sig)
    s.note(f"{sig.name} sent to worker {victim['worker']} (pid {pid})", s.injected_at)
    return victim


def kill_worker(s: Session, drill: DrillDef) -> Judge:
    victim = _signal_worker(s, drill, signal.SIGKILL)
    pid, worker, bound = int(victim["pid"]), str(victim["worker"]), restart_bound(s)
    hit = s.wait_events(
        lambda evs: j.first_event(evs, "worker_ready", after=s.injected_at or 0.0,
                                  where=lambda e: e["worker"] == worker),
        timeout=min(drill.seconds, bound + 5), kinds=["worker_ready"],
    )  # fmt: skip
    if hit is not None:
        s.note(f"worker {worker} replaced and ready", float(hit["ts"]))
    s.restored_at = time.time()
    return lambda obs: j.judge_kill(
        obs, victim_pid=pid, victim_worker=worker, restart_bound_s=bound
    )


def hang_worker(s: Session, drill: DrillDef) -> Judge:
    victim = _signal_worker(s, drill, signal.SIGSTOP)
    pid, worker = int(victim["pid"]), str(victim["worker"])
    # A frozen process must not outlive the drill: SIGCONT lets a pending SIGTERM land.
    s.cleanups.append(lambda: _cont(pid))
    p = s.spec.probes
    kill_bound = p.period * p.failure_threshold + p.timeout + 10.0
    bound = kill_bound + restart_bound(s)
    hit = s.wait_events(
        lambda evs: j.first_event(evs, "worker_ready", after=s.injected_at or 0.0,
                                  where=lambda e: e["worker"] == worker),
        timeout=min(drill.seconds, bound + 5), kinds=["worker_ready"],
    )  # fmt: skip
    if hit is not None:
        s.note(f"worker {worker} replaced and ready", float(hit["ts"]))
    _cont(pid)
    s.restored_at = time.time()
    return lambda obs: j.judge_hang(
        obs, victim_pid=pid, victim_worker=worker, kill_bound_s=kill_bound,
        restart_bound_s=restart_bound(s),
    )  # fmt: skip


def _cont(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGCONT)


def with_fault(
    s: Session, faults: str, until: Callable[[list[dict[str, Any]]], Mapping[str, Any] | None],
    seconds: float,
) -> None:  # fmt: skip
    """Roll out a release with ``FALCON_FAULTS=faults``, wait for ``until``, roll back."""
    original = str((s.status["supervisor"]["releases"].get(s.current_release()) or {})
                   .get("env", {}).get("FALCON_FAULTS", ""))  # fmt: skip
    s.note(f"rolling out FALCON_FAULTS={faults}", time.time())
    restored = False

    def restore() -> None:
        nonlocal restored
        if restored:
            return
        restored = True
        for attempt in range(3):
            s.roll_out({"FALCON_FAULTS": original}, allow_faults=bool(original),
                       timeout=ROLLOUT_TIMEOUT_S)  # fmt: skip
            left = _faulty_workers(s.refresh(), original)
            if not left:
                return
            # Seen with soft-limit recycles: a surge replacement forked just as the rolling
            # restart began was not in its list and kept serving the faulty release.
            s.measured["rollback_retries"] = attempt + 1
            s.note(f"workers still on the faulty release after the rollback: {left}; again",
                   time.time())  # fmt: skip
        raise DrillAbortedError(f"workers {left} still run the faulty release after 3 rollbacks")

    s.cleanups.append(restore)
    release = s.roll_out({"FALCON_FAULTS": faults}, allow_faults=True, timeout=ROLLOUT_TIMEOUT_S)
    ready = j.first_event(
        s.events(["worker_ready"]), "worker_ready", after=s.started_at,
        where=lambda e: e["release"] == release,
    )  # fmt: skip
    if ready is None:
        raise DrillAbortedError(f"no worker of the faulty release {release} became ready")
    s.injected_at = float(ready["ts"])
    s.note(f"first worker of faulty release {release} ready", s.injected_at)
    s.measured["faulty_release"] = release
    hit = s.wait_events(until, timeout=seconds)
    if hit is not None:
        s.note(f"{hit['kind']} {hit['details'].get('name', hit.get('worker') or '')}".strip(),
               float(hit["ts"]))  # fmt: skip
    else:
        time.sleep(0)  # waited the whole window
    s.rollback_at = time.time()
    s.note("rolling back the faulty release", s.rollback_at)
    restore()
    s.restored_at = time.time()
    s.note("faulty release rolled back", s.restored_at)


def _faulty_workers(status: Mapping[str, Any], original: str) -> list[str]:
    """Workers whose release runs other faults than ``original`` (pure)."""
    releases = status["supervisor"].get("releases", {})
    return [
        str(w["worker"])
        for w in status["workers"]
        if w["state"] in ("starting", "ready")
        and str((releases.get(w["release"]) or {}).get("env", {}).get("FALCON_FAULTS", ""))
        != original
    ]


def memory_leak(s: Session, drill: DrillDef) -> Judge:
    if not s.status["supervisor"].get("memory_limit_bytes"):
        raise DrillAbortedError("no memory limit is set (FALCON_MEMORY_LIMIT_MB=0)")
    with_fault(
        s, "leak_mb_per_request=5",
        lambda evs: j.first_alert(evs, j.MEMORY_ALERTS, after=s.injected_at or s.started_at)
        if j.first_event(evs, "limit_recycle", after=s.injected_at or s.started_at) else None,
        drill.seconds,
    )  # fmt: skip
    return lambda obs: j.judge_memory_leak(obs, recycle_bound_s=drill.seconds)


def error_spike(s: Session, drill: DrillDef) -> Judge:
    a = s.spec.alerts
    # The slower of the two alerts: the burn-rate one has no `for` (but may already be firing
    # from an earlier drill), the error-rate one waits error_rate_for (60 s by default).
    bound = a.error_rate_for + 2 * a.evaluation_interval + 20.0
    with_fault(
        s, "error_ratio=0.3",
        lambda evs: j.first_alert(evs, j.ERROR_ALERTS, after=s.injected_at or s.started_at),
        max(drill.seconds, bound),
    )  # fmt: skip
    incidents = "/incidents" in s.client.routes()
    return lambda obs: j.judge_error_spike(obs, alert_bound_s=bound, ratio=0.3, incidents=incidents)


def cpu_spike(s: Session, drill: DrillDef) -> Judge:
    with_fault(s, "cpu_burn_ms=20", lambda evs: None, drill.seconds)
    return lambda obs: j.judge_degraded(obs, min_p50_ms=None, max_failed_ratio=0.01)


def slow_model(s: Session, drill: DrillDef) -> Judge:
    a = s.spec.alerts
    # Every answer slow: the 5m window's share within the objective falls under
    # slo.latency_target once the slow answers are (1 - target) of the window's requests: 15 s
    # at an unchanged rate, longer after heavier traffic (the seed drill's 100 req/s), at the
    # latest when the window holds only slow ones. Then latency_for, evaluation, journal.
    bound = LATENCY_WINDOW + a.latency_for + 2 * a.evaluation_interval + 20.0
    with_fault(
        s, "latency_ms=600",
        lambda evs: j.first_alert(evs, j.LATENCY_ALERTS, after=s.injected_at or s.started_at),
        max(drill.seconds, bound),
    )  # fmt: skip
    return lambda obs: j.judge_degraded(
        obs, min_p50_ms=600.0, max_failed_ratio=0.01, latency_alert_bound_s=bound
    )


def connection_flood(s: Session, drill: DrillDef, sockets: int = 2000) -> Judge:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = max(0, min(sockets, soft - 256))
    port = int(s.status["supervisor"]["port"])
    host = str(s.status["supervisor"].get("host") or "127.0.0.1")
    host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    held: list[socket.socket] = []
    stop = threading.Event()
    s.injected_at = time.time()
    s.note(f"opening {target} idle connections to {host}:{port}", s.injected_at)

    def hold() -> None:
        # Hand-written (a few lines of socket calls): no library holds idle sockets open.
        while not stop.is_set() and len(held) < target:
            try:
                held.append(socket.create_connection((host, port), timeout=2))
            except OSError:
                time.sleep(0.05)

    opener = threading.Thread(target=hold, name="falcon-drill-flood", daemon=True)
    opener.start()

    def close_all() -> None:
        stop.set()
        opener.join(timeout=5)
        for sock in held:
            with contextlib.suppress(OSError):
                sock.close()

    s.cleanups.append(close_all)
    time.sleep(drill.seconds)
    s.measured["idle_connections_opened"] = len(held)
    close_all()
    s.restored_at = time.time()
    s.note(f"closed {len(held)} idle connections", s.restored_at)
    return lambda obs: j.judge_degraded(obs, min_p50_ms=None, max_failed_ratio=0.01)


def _lazy(module: str, name: str) -> Scenario:
    """A scenario imported when it runs (store drivers load only for store drills)."""

    def run(s: Session, drill: DrillDef) -> Judge:
        import importlib

        scenario: Scenario = getattr(
            importlib.import_module(f"falcon_platform.drills.{module}"), name
        )
        return scenario(s, drill)

    return run


def _store(name: str) -> Scenario:
    return _lazy("stores", name)


SCENARIOS: dict[str, Scenario] = {
    "kill-worker": kill_worker,
    "hang-worker": hang_worker,
    "memory-leak": memory_leak,
    "error-spike": error_spike,
    "cpu-spike": cpu_spike,
    "slow-model": slow_model,
    "connection-flood": connection_flood,
    "seed-incident": _lazy("seed_replay", "seed_incident"),
    "bad-deploy": _lazy("deploys", "bad_deploy"),
    "bad-deploy-forced": _lazy("deploys", "bad_deploy_forced"),
    "redis-down": _store("redis_down"),
    "postgres-down": _store("postgres_down"),
    "postgres-slow": _store("postgres_slow"),
}
