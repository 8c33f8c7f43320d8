"""An incident bundle: everything the postmortem shows, as plain JSON-able data.

``collect_bundle`` is the I/O shell (journal, request log, SLI store); ``assemble`` and the
helpers are pure. The postmortem and the graphs are rendered from the bundle alone, so a
bundle saved as JSON renders the same document anywhere::

    bundle = collect_bundle(incident, journal=journal, engine=engine, sli=reader, spec=spec,
                            now=time.time())
    text = render_markdown(bundle)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, func, select

from falcon_platform.config.spec import Spec
from falcon_platform.events.journal import Event, EventJournal
from falcon_platform.incidents.impact import (
    RequestRow,
    compute_impact,
    estimate_unanswered,
    percentile,
)
from falcon_platform.incidents.model import Incident
from falcon_platform.incidents.signals import is_abnormal_exit
from falcon_platform.incidents.timeline import build_timeline
from falcon_platform.observability import names
from falcon_platform.observability.sli_source import SLISource
from falcon_platform.stores.schema import request_log

MARKER_KINDS = {
    "rollout_started": "deploy",
    "rollout_step": "deploy",
    "rolling_restart_started": "deploy",
    "config_changed": "deploy",
    "alert_firing": "alert",
    "worker_exited": "kill",
    "rollback_started": "rollback",
    "rollback_finished": "rollback",
    "rollout_aborted": "rollback",
    "incident_opened": "incident",
    "incident_mitigated": "incident",
}
BUNDLE_VERSION = 1
MAX_ROWS = 2_000_000  # ~100 MB in memory: a longer incident is summarised by SQL alone


def request_rows_query(start: float, end: float) -> Any:
    return (
        select(
            request_log.c.ts,
            request_log.c.worker,
            request_log.c.release,
            request_log.c.status_code,
            request_log.c.latency_ms,
            request_log.c.client_id,
        )
        .where(request_log.c.ts >= start, request_log.c.ts <= end)
        .order_by(request_log.c.ts)
        .limit(MAX_ROWS)
    )


def appendix_queries(start: float, end: float, slo_since: float) -> list[dict[str, str]]:
    """The SQL that reproduces every number (request log; SQLite and PostgreSQL alike).

    Text for a human to paste, never executed; only formatted floats are interpolated."""
    w = f"ts BETWEEN {start:.3f} AND {end:.3f}"
    return [
        {
            "name": "Requests and failures in the window",
            "sql": f"SELECT COUNT(*) AS requests, SUM(status_code >= 500) AS failed "  # noqa: S608
            f"FROM request_log WHERE {w};",
        },
        {
            "name": "Failures by status",
            "sql": f"SELECT status_code, COUNT(*) FROM request_log WHERE {w} "  # noqa: S608
            "GROUP BY status_code ORDER BY status_code;",
        },
        {
            "name": "Clients affected / all clients",
            "sql": f"SELECT COUNT(DISTINCT CASE WHEN status_code >= 500 THEN client_id END), "  # noqa: S608
            f"COUNT(DISTINCT client_id) FROM request_log WHERE {w};",
        },
        {
            "name": "Per release and worker",
            "sql": f"SELECT release, worker, COUNT(*), SUM(status_code >= 500) FROM request_log "  # noqa: S608
            f"WHERE {w} GROUP BY release, worker;",
        },
        {
            "name": "Requests in the SLO window (error budget)",
            "sql": f"SELECT COUNT(*) FROM request_log WHERE ts >= {slo_since:.3f};",  # noqa: S608
        },
        {
            "name": "Journal events of the timeline",
            "sql": f"SELECT ts, kind, release, worker, details FROM events WHERE {w} ORDER BY ts;",  # noqa: S608
        },
    ]


def bucket_series(
    rows: Sequence[RequestRow], start: float, end: float, step: float
) -> dict[str, list[float]]:
    """Request rate, error ratio and p99 per ``step`` seconds (pure)."""
    n = max(1, math.ceil((end - start) / step))
    buckets: list[list[RequestRow]] = [[] for _ in range(n)]
    for r in rows:
        if start <= r.ts < end:
            buckets[min(n - 1, int((r.ts - start) // step))].append(r)
    return {
        "t": [start + (i + 0.5) * step for i in range(n)],
        "rps": [len(b) / step for b in buckets],
        "error_ratio": [
            sum(1 for r in b if r.status_code >= 500) / len(b) if b else 0.0 for b in buckets
        ],
        "p99_ms": [percentile([r.latency_ms for r in b], 99) for b in buckets],
    }


def graph_window(inc: Incident, now: float) -> tuple[float, float]:
    start, end = inc.started_at, inc.end(now)
    pad = max(30.0, (end - start) * 0.5)
    return start - pad, end + pad


def root_cause_facts(events: Sequence[Event], inc: Incident) -> list[str]:
    """What the data shows about the cause (pure): deaths by reason, memory at OOM kills,
    configuration changes and releases near the start. The why stays for humans."""
    facts: list[str] = []
    deaths = [e for e in events if is_abnormal_exit(e) and e.ts >= inc.started_at - 1]
    if deaths:
        reasons: dict[str, int] = {}
        for e in deaths:
            reason = str(e.details.get("reason", "?"))
            reasons[reason] = reasons.get(reason, 0) + 1
        shown = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
        facts.append(f"{len(deaths)} worker deaths during the incident: {shown}.")
    ooms = [e for e in deaths if e.details.get("oom_killed")]
    if ooms:
        peaks = [e.details.get("peak_rss_bytes") for e in ooms]
        limit = ooms[0].details.get("memory_limit_bytes")
        known = [p for p in peaks if isinstance(p, int | float)]
        if known and isinstance(limit, int | float) and limit:
            facts.append(
                f"OOM kills at peak RSS up to {max(known) / 1e6:.0f} MB against a limit of "
                f"{limit / 1e6:.0f} MB: memory grew until the limit."
            )
    for e in events:
        if e.kind == "config_changed" and inc.started_at - 3600 <= e.ts <= inc.end(e.ts):
            changes = e.details.get("changes") or []
            facts.append(f"Configuration changed before the incident: {changes}.")
        if e.kind in (
            "release_created",
            "rollout_started",
        ) and inc.started_at - 3600 <= e.ts <= inc.end(e.ts):
            diff = e.details.get("config_diff") or e.details.get("diff")
            facts.append(
                f"Release {e.release} {e.kind.split('_')[1]} at {e.iso_ts}"
                + (f"; config diff: {diff}" if diff else "")
                + "."
            )
        if e.kind == "gate_override" and e.ts >= inc.started_at - 3600:
            facts.append(f"The config gate was overridden: {dict(e.details)}.")
    if not facts:
        facts.append("The journal shows no worker death, release or config change nearby.")
    return facts


def memory_growth_facts(
    memory: dict[str, list[tuple[float, float]]],
    rows: Sequence[RequestRow],
    start: float,
    end: float,
    *,
    lookback_s: float = 300.0,
    min_mb_per_request: float = 0.1,
) -> list[str]:
    """Per worker: RSS growth per request served between its first sample and its peak in
    [start - lookback, end] (pure). Only growth of at least ``min_mb_per_request`` is named:
    a leak, not noise."""
    facts: list[str] = []
    for worker, points in sorted(memory.items()):
        inside = sorted((t, v) for t, v in points if start - lookback_s <= t <= end)
        if len(inside) < 2:
            continue
        first = inside[0]
        peak = max(inside, key=lambda p: p[1])
        served = sum(1 for r in rows if r.worker == worker and first[0] <= r.ts <= peak[0])
        if served < 10 or peak[1] <= first[1]:
            continue
        per_request = (peak[1] - first[1]) / 1e6 / served
        if per_request >= min_mb_per_request:
            facts.append(
                f"Memory of worker {worker} grew {per_request:.1f} MB per request "
                f"({first[1] / 1e6:.0f} -> {peak[1] / 1e6:.0f} MB over {served} requests)."
            )
    return facts


def assemble(
    inc: Incident,
    *,
    events: Sequence[Event],
    rows: Sequence[RequestRow],
    spec: Spec,
    now: float,
    inflight: dict[str, list[tuple[float, float]]],
    memory: dict[str, list[tuple[float, float]]],
    memory_limit_bytes: float | None,
    scrape_interval_s: float,
    slo_window_requests: int,
    related: Sequence[Incident] = (),
    service: str = "falcon",
    actions: Sequence[dict[str, Any]] = (),
    overdue_actions: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """The bundle from data already read (pure). ``actions``: this incident's action items;
    ``overdue_actions``: other incidents' items past due and not done."""
    start, end = inc.started_at, inc.end(now)
    base_len = max(300.0, end - start)
    baseline = [r for r in rows if start - base_len <= r.ts < start]
    deaths = [
        (e.worker or "?", e.release, e.ts)
        for e in events
        if is_abnormal_exit(e) and start <= e.ts <= end and not e.details.get("during_boot")
    ]
    unanswered = estimate_unanswered(deaths, inflight, rows)
    impact = compute_impact(
        rows,
        window=(start, end),
        baseline=baseline,
        slo=spec.slo,
        unanswered=unanswered,
        slo_window_requests=slo_window_requests,
    )
    g_start, g_end = graph_window(inc, now)
    step = max(1.0, (g_end - g_start) / 120)
    timeline = build_timeline(events, inc.id)
    markers = [
        {"ts": r.ts, "kind": MARKER_KINDS[r.kind], "label": r.event}
        for r in timeline
        if r.kind in MARKER_KINDS
        and g_start <= r.ts <= g_end
        and (r.kind != "worker_exited" or "OOM" in r.event or "Signaled" in r.event)
    ]
    rollback = [r.to_dict() for r in timeline if r.kind.startswith("rollback") or r.decision]
    return {
        "version": BUNDLE_VERSION,
        "service": service,
        "generated_at": now,
        "incident": inc.to_dict(),
        "window": {
            "start": start,
            "end": end,
            "baseline_start": start - base_len,
            "ongoing": inc.mitigated_at is None and inc.resolved_at is None,
        },
        "impact": impact.to_dict(),
        "timeline": [r.to_dict() for r in timeline],
        "root_cause": memory_growth_facts(memory, rows, start, end) + root_cause_facts(events, inc),
        "resolution": rollback,
        "series": {
            "start": g_start,
            "end": g_end,
            "step": step,
            **bucket_series(rows, g_start, g_end, step),
            "memory": {w: [list(p) for p in pts] for w, pts in sorted(memory.items())},
            "memory_limit_bytes": memory_limit_bytes,
        },
        "markers": markers,
        "queries": appendix_queries(start, end, now - spec.slo.window),
        "method": {
            "failed": "answered 5xx (request log) + unanswered (in flight in a killed worker)",
            "unanswered": (
                "each abnormal worker death: Little's law over the 5 s before it (the worker's "
                "arrival rate x mean latency, from the request log); error bound: its "
                "disagreement with the worker's in-flight gauge at the supervisor's last "
                f"scrape (every {scrape_interval_s:g} s), at least 1"
            ),
            "baseline": f"the {base_len:.0f} s before the start",
            "budget": "failed / ((1 - availability target) x requests in the SLO window)",
        },
        "actions": list(actions),
        "overdue_actions": [a for a in overdue_actions if a["incident"] != inc.id],
        "related": [
            {"id": r.id, "title": r.title, "severity": r.severity.value, "status": r.status.value}
            for r in related
            if r.id != inc.id
        ],
    }


def _series(
    sli: SLISource | None, name: str, start: float, end: float
) -> dict[str, list[tuple[float, float]]]:
    if sli is None:
        return {}
    found: dict[str, list[tuple[float, float]]] = {}
    for s in sli.query(name, start, end):
        worker = s.labels.get("worker")
        if worker:
            found.setdefault(worker, []).extend((float(t), float(v)) for t, v in s.samples)
    return found


def collect_bundle(
    inc: Incident,
    *,
    journal: EventJournal,
    engine: Engine,
    sli: SLISource | None,
    spec: Spec,
    now: float,
    scrape_interval_s: float,
    related: Sequence[Incident] = (),
    actions: Sequence[dict[str, Any]] = (),
    overdue_actions: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """Read what the incident's window holds and assemble the bundle (I/O shell)."""
    g_start, g_end = graph_window(inc, now)
    start, end = inc.started_at, inc.end(now)
    base_len = max(300.0, end - start)
    lo = min(g_start, start - base_len)
    events = journal.query(since=lo, until=max(g_end, (inc.resolved_at or now) + 5))
    with engine.connect() as conn:
        rows = [RequestRow(*r) for r in conn.execute(request_rows_query(lo, g_end)).all()]
        slo_requests = int(
            conn.execute(
                select(func.count())
                .select_from(request_log)
                .where(request_log.c.ts >= now - spec.slo.window)
            ).scalar_one()
        )
    inflight = _series(sli, names.INFLIGHT, start - 120, end)
    memory = _series(sli, names.RSS, g_start, g_end)
    # The limit the workers report (settings may override the spec), else the spec's.
    limits = [
        v for pts in _series(sli, names.MEMORY_LIMIT, g_start, g_end).values() for _, v in pts
    ]
    limits += [
        float(e.details["memory_limit_bytes"])
        for e in events
        if e.kind == "worker_exited" and e.details.get("memory_limit_bytes")
    ]
    limit = max(limits) if limits else (spec.workers.memory_limit_mb * 1_048_576 or None)
    return assemble(
        inc,
        events=events,
        rows=rows,
        spec=spec,
        now=now,
        inflight=inflight,
        memory=memory,
        memory_limit_bytes=limit,
        scrape_interval_s=scrape_interval_s,
        slo_window_requests=slo_requests,
        related=related,
        service=spec.service,
        actions=actions,
        overdue_actions=overdue_actions,
    )
