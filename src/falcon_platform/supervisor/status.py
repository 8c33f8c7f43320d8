"""What the supervisor reports: health line, worker rows, gauges, SLI points (pure over slots).

ok, why = health(desired, slots, crash_looping, stopping=False)  # (False, "1/2 workers ready; ...")
rows = [worker_status(s, limits, crash_looping, now_wall, now_mono) for s in slots]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from falcon_platform.config.memory import MemoryLimits
from falcon_platform.observability import names
from falcon_platform.supervisor.fleet_metrics import SupervisorMetrics
from falcon_platform.supervisor.lifecycle import WorkerState
from falcon_platform.supervisor.slots import Slot

Point = tuple[str, dict[str, str], float, str]


def health(
    desired: Mapping[str, int],
    slots: Iterable[Slot],
    crash_looping: Mapping[str, bool],
    *,
    stopping: bool,
) -> tuple[bool, str]:
    """(enough workers ready?, one line why) for `falcon check-health`."""
    slots = list(slots)
    want = sum(desired.values())
    ready = sum(1 for s in slots if s.state is WorkerState.READY and not s.retiring)
    failed = [s.slot_id for s in slots if s.state is WorkerState.FAILED]
    loops = sorted(r for r, on in crash_looping.items() if on)
    if stopping:
        return False, f"supervisor is stopping; {ready}/{want} workers ready"
    if want == 0:
        return False, "no workers desired"
    if ready >= want:
        return True, f"{ready}/{want} workers ready"
    why = f"{ready}/{want} workers ready"
    if loops:
        why += f"; CrashLoopBackOff in release {', '.join(loops)}"
    if failed:
        why += f"; boot failed (not retried): {', '.join(failed)}"
    return False, why


def display_state(slot: Slot, crash_looping: Mapping[str, bool]) -> str:
    """Kubernetes' wording: a slot waiting out its back-off in a crash-looping pool."""
    if slot.state is WorkerState.BACKOFF and crash_looping.get(slot.release):
        return "CrashLoopBackOff"
    return slot.state.value


def worker_status(
    slot: Slot,
    limits: MemoryLimits,
    crash_looping: Mapping[str, bool],
    now_wall: float,
    now_mono: float,
) -> dict[str, Any]:
    exit_info = slot.last_exit
    last_exit = None
    if exit_info is not None:
        last_exit = {
            "exit_code": exit_info.exit_code,
            "signal": exit_info.signal,
            "reason": exit_info.reason.value,
            "oom_killed": exit_info.oom_killed,
            "peak_rss_bytes": exit_info.peak_rss_bytes,
            "at": slot.last_exit_wall,
            "ago_s": round(now_wall - slot.last_exit_wall, 3) if slot.last_exit_wall else None,
        }
    backoff = slot.state is WorkerState.BACKOFF and slot.restart_at is not None
    return {
        "worker": slot.slot_id,
        "pid": slot.pid,
        "release": slot.release,
        "state": display_state(slot, crash_looping),
        "ready": slot.state is WorkerState.READY,
        "rss_bytes": slot.rss_bytes if slot.live else None,
        "peak_rss_bytes": slot.peak_rss_bytes or None,
        "pss_bytes": slot.pss_bytes if slot.live else None,
        "uss_bytes": slot.uss_bytes if slot.live else None,
        "peak_pss_bytes": slot.peak_pss_bytes or None,
        "memory_limit_bytes": limits.limit_bytes,
        "restarts": slot.restarts,
        "recycles": slot.recycles,
        "uptime_s": round(now_mono - slot.started_mono, 3)
        if slot.live and slot.started_mono
        else None,
        "restart_in_s": round(max(0.0, (slot.restart_at or 0.0) - now_mono), 3)
        if backoff
        else None,
        "last_exit": last_exit,
        "last_exit_reason": exit_info.reason.value if exit_info else None,
        "boot_message": slot.boot_message,
        "boot_failures": slot.boot_failures,
        "retiring": slot.retiring,
        "surge": slot.surge,
    }


def update_gauges(
    metrics: SupervisorMetrics,
    slots: Iterable[Slot],
    desired: Mapping[str, int],
    crash_looping: Mapping[str, bool],
) -> None:
    """Set the state gauges from the slots (called before every scrape and /metrics)."""
    slots = list(slots)
    metrics.workers.clear()
    metrics.worker_rss.clear()
    metrics.worker_pss.clear()
    counts: dict[tuple[str, str], int] = {}
    for slot in slots:
        key = (slot.release, display_state(slot, crash_looping))
        counts[key] = counts.get(key, 0) + 1
        if slot.live and slot.rss_bytes is not None:
            metrics.worker_rss.labels(worker=slot.slot_id, release=slot.release).set(slot.rss_bytes)
        if slot.live and slot.pss_bytes is not None:
            metrics.worker_pss.labels(worker=slot.slot_id, release=slot.release).set(slot.pss_bytes)
    for (release, state), n in counts.items():
        metrics.workers.labels(release=release, state=state).set(n)
    for release in set(desired) | {s.release for s in slots}:
        metrics.workers_desired.labels(release=release).set(desired.get(release, 0))
        ready = sum(1 for s in slots if s.release == release and s.state is WorkerState.READY)
        metrics.workers_ready.labels(release=release).set(ready)


def supervisor_points(
    metrics: SupervisorMetrics, slots: Iterable[Slot], limits: MemoryLimits
) -> list[Point]:
    """The supervisor's own series for the SLI store, plus each live worker's memory limit."""
    points: list[Point] = []
    for family in metrics.registry.collect():
        kind = "gauge" if family.type == "gauge" else "counter"
        for sample in family.samples:
            if not sample.name.endswith("_created"):
                points.append((sample.name, dict(sample.labels), float(sample.value), kind))
    if limits.limit_bytes is not None:
        for slot in slots:
            if slot.live:
                labels = {"worker": slot.slot_id, "release": slot.release}
                points.append((names.MEMORY_LIMIT, labels, float(limits.limit_bytes), "gauge"))
    return points
