"""An incident's timeline from the journal, in the seed template's Time / Event / Action form.

Pure: journal events in, rows out. Automatic rows are marked; decision points (rollback,
gate override, skipped gate, aborted rollout, a human's mitigation) are called out::

    rows = build_timeline(journal.query(since=start - 300, until=end + 60), incident)
    for r in rows: print(r.time, r.event, r.action, "auto" if r.automatic else "human")
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from falcon_platform.events.journal import Event

# Noise for a human reader: every start and probe of every worker is in the journal.
SKIPPED = frozenset(
    {
        "worker_started",
        "restart_scheduled",
        "settings_fingerprint",
        "orphans_shipped",
        "liveness_kill_deferred",
        "incident_joined",
    }
)
DECISIONS = frozenset(
    {
        "rollout_aborted",
        "rollback_started",
        "gate_override",
        "gate_skipped",
        "gate_refused",
        "release_resume_refused",
        "release_resume_skipped",
    }
)


@dataclass(frozen=True, slots=True)
class TimelineRow:
    ts: float
    kind: str
    event: str
    action: str
    automatic: bool
    decision: bool = False
    release: str | None = None
    worker: str | None = None

    @property
    def time(self) -> str:
        return datetime.fromtimestamp(self.ts, UTC).strftime("%H:%M:%S")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"time": self.time}


def _mb(value: object) -> str:
    return f"{float(value) / 1e6:.0f} MB" if isinstance(value, int | float) else "?"


def _by(d: Mapping[str, Any]) -> str | None:
    who = d.get("by") or d.get("created_by") or d.get("user")
    return str(who) if who else None


def describe(e: Event) -> tuple[str, str] | None:
    """(event, action taken) for one journal event; None when it is left out (pure)."""
    d = e.details
    w, r = e.worker or "?", e.release or "?"
    k = e.kind
    if k in SKIPPED:
        return None
    if k == "alert_firing":
        sev = d.get("severity", "")
        return (
            f"Alert {d.get('name', '?')} fires ({sev}): {(d.get('annotations') or {}).get('summary', '')}",
            "page sent" if sev == "critical" else "recorded",
        )
    if k == "alert_resolved":
        return f"Alert {d.get('name', '?')} resolved", "-"
    if k == "worker_exited":
        reason = d.get("reason", "?")
        what = f"Worker {w} ({r}) exited: {reason}"
        if d.get("oom_killed"):
            what += f" at {_mb(d.get('peak_rss_bytes'))} (limit {_mb(d.get('memory_limit_bytes'))})"
        elif d.get("signal"):
            what += f" ({d['signal']})"
        expected = reason in {"Stopped", "Recycled"}
        return what, "-" if expected else "auto-restart with back-off"
    if k == "worker_ready":
        return f"Worker {w} ({r}) ready", "serving"
    if k == "crash_loop_entered":
        return (
            f"Release {r} in a crash loop ({d.get('restarts_in_window', '?')} restarts in "
            f"{d.get('window_s', '?')} s)",
            "restarts slowed (CrashLoopBackOff)",
        )
    if k == "crash_loop_left":
        return f"Release {r} out of the crash loop", "-"
    if k == "limit_recycle":
        return f"Worker {w} reached its soft memory limit", "drained and replaced"
    if k == "liveness_kill":
        return f"Worker {w} failed its liveness probe", "killed and restarted"
    if k == "service_unavailable":
        return f"No worker ready ({d.get('why', '')})", "supervisor answers 503 + Retry-After"
    if k == "service_available":
        return (
            f"A worker is ready again after {d.get('unavailable_s', '?')} s",
            f"{d.get('answered_503', '?')} requests were answered 503 meanwhile",
        )
    if k == "deployment_unbootable":
        return "Every worker failed to boot", "Falcon is NOT serving"
    if k == "config_changed":
        changes = d.get("changes") or []
        shown = "; ".join(str(c) for c in changes[:3]) if isinstance(changes, list) else ""
        return f"Configuration changed{': ' + shown if shown else ''}", "journaled"
    if k == "gate_override":
        return (
            "Config gate overridden",
            f"reason: {d.get('reason') or d.get('override_reason') or '?'}",
        )
    if k == "gate_refused":
        return f"Config gate refused release {r}", "workers not started"
    if k == "gate_passed":
        return f"Gate passed for {r}", "-"
    if k == "gate_skipped":
        return f"Gate SKIPPED for {r}", f"reason: {d.get('reason', '?')}"
    if k == "release_created":
        return f"Release {r} created", str(d.get("reason") or "-")
    if k == "rollout_started":
        return f"Deployment of {r} started", "canary rollout"
    if k == "rollout_step":
        return f"Canary step: {d.get('weight', d.get('step', '?'))}% of workers on {r}", "-"
    if k == "canary_analysis":
        return f"Canary analysis of {r}: {d.get('verdict', '?')}", str(d.get("reason") or "-")
    if k == "rollout_promoted":
        return f"Release {r} promoted", "-"
    if k == "rollout_aborted":
        return f"Rollout of {r} aborted", f"automatic rollback ({d.get('reason', '?')})"
    if k == "rollback_started":
        return f"Rollback from {r} started", f"to {d.get('to_release', '?')}"
    if k == "rollback_finished":
        return f"Rollback from {r} finished", "previous release serving"
    if k == "rolling_restart_started":
        return "Rolling restart started", f"new release {r}"
    if k == "rolling_restart_finished":
        return "Rolling restart finished", str(d.get("outcome") or d.get("result") or "-")
    if k == "supervisor_started":
        return "Supervisor started", "-"
    if k == "release_resumed":
        return (
            f"Supervisor resumed release {r}",
            f"the last stable release (base {d.get('base', '?')})",
        )
    if k == "release_resume_refused":
        return (
            f"Release {r} could not be resumed at start",
            f"base {d.get('base', '?')} started instead: {d.get('reason', '?')}",
        )
    if k == "release_resume_skipped":
        return (
            f"Release {r} skipped at start (`falcon up --base`)",
            f"base {d.get('base', '?')} started",
        )
    if k == "supervisor_stopped":
        return "Supervisor stopped", "-"
    if k == "supervisor_unclean_shutdown":
        return "Previous supervisor died without shutting down", "found at start"
    inc = d.get("incident", "?")
    if k == "incident_opened":
        who = "Falcon" if d.get("automatic") else (_by(d) or "a human")
        return f"Incident {inc} declared ({d.get('severity', '?')})", f"opened by {who}"
    if k == "incident_reopened":
        return f"Incident {inc} reopened: the fault came back", "status open"
    if k == "incident_severity_changed":
        return (
            f"Severity {d.get('previous', '?')} -> {d.get('severity', '?')}",
            str(d.get("why") or (f"set by {_by(d)}" if _by(d) else "-")),
        )
    if k == "incident_acknowledged":
        return f"{_by(d)} acknowledged", "takes command"
    if k == "incident_note":
        return f"Note by {_by(d)}: {d.get('text', '')}", "-"
    if k == "incident_mitigated":
        if d.get("automatic"):
            return "Every trigger cleared", "incident mitigated by Falcon"
        return f"{_by(d)} marked the incident mitigated", str(d.get("text") or "-")
    if k == "incident_resolved":
        return f"{_by(d)} resolved the incident", str(d.get("text") or "-")
    return k.replace("_", " "), "-"


def _automatic(e: Event) -> bool:
    if e.kind.startswith("incident_"):
        return bool(e.details.get("automatic"))
    return _by(e.details) is None


def build_timeline(events: Iterable[Event], incident_id: str | None = None) -> list[TimelineRow]:
    """Rows in time order; another incident's own events are left out."""
    rows: list[TimelineRow] = []
    for e in sorted(events, key=lambda ev: ev.ts):
        if (
            e.kind.startswith("incident_")
            and incident_id
            and e.details.get("incident") != incident_id
        ):
            continue
        described = describe(e)
        if described is None:
            continue
        event, action = described
        decision = e.kind in DECISIONS or (
            e.kind == "incident_mitigated" and not e.details.get("automatic")
        )
        rows.append(
            TimelineRow(e.ts, e.kind, event, action, _automatic(e), decision, e.release, e.worker)
        )
    return rows
