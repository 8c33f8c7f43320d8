"""What the console shows, decided from the control API's JSON (pure; no I/O).

Every state has a word as well as a colour (the page is readable in greyscale and by a
screen reader); memory is a bar whose level turns at the soft limit and the hard limit::

    >>> memory_level(300, soft=400, limit=500)
    'ok'
    >>> memory_level(420, soft=400, limit=500)
    'soft'
    >>> format_bytes(98_562_048)
    '94.0 MiB'
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

EVENTS_PER_PAGE = 50
#: worker state -> the word's tone (a CSS class; the word itself is always shown)
STATE_TONE = {
    "new": "info",
    "starting": "info",
    "ready": "good",
    "draining": "info",
    "killing": "bad",
    "exited": "bad",
    "backoff": "warn",
    "failed": "bad",
    "stopped": "info",
}


def memory_level(rss: float | None, *, soft: float | None, limit: float | None) -> str:
    """``ok`` below the soft limit, ``soft`` from it, ``limit`` at the hard limit."""
    if rss is None:
        return "unknown"
    if limit and rss >= limit:
        return "limit"
    if soft and rss >= soft:
        return "soft"
    return "ok"


def format_bytes(value: float | None) -> str:
    if value is None:
        return "–"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"  # pragma: no cover - the loop always returns


def format_seconds(value: float | None) -> str:
    """``3725`` -> ``1h 2m``; ``42.5`` -> ``42s``."""
    if value is None:
        return "–"
    seconds = int(value)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def format_time(ts: float | None) -> str:
    """Epoch seconds -> ``2026-11-30 14:26:05Z`` (UTC: the journal's and the CLI's zone)."""
    if ts is None:
        return "–"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def format_percent(value: float | None, digits: int = 1) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{value * 100:.{digits}f}%"


@dataclass(frozen=True)
class WorkerRow:
    worker: str
    pid: int | None
    release: str
    state: str
    tone: str
    rss: str
    measure: str  # "PSS" or "RSS": what ``rss`` is
    limit: str
    percent: float  # of the hard limit, 0..100 (the bar's width)
    soft_percent: float | None  # where the soft limit sits on the bar
    level: str
    restarts: int
    last_exit_reason: str
    uptime: str


def worker_rows(status: Mapping[str, Any]) -> list[WorkerRow]:
    """One row per worker of ``GET /status``."""
    sup = status.get("supervisor", {})
    soft = sup.get("memory_soft_limit_bytes")
    rows = []
    for w in status.get("workers", []):
        limit = w.get("memory_limit_bytes") or sup.get("memory_limit_bytes")
        # The limits apply to PSS (zygote-forked workers share the model's pages); RSS until
        # the supervisor has sampled PSS.
        pss = w.get("pss_bytes")
        rss = pss if pss is not None else w.get("rss_bytes")
        percent = min(100.0, 100.0 * rss / limit) if rss and limit else 0.0
        state = str(w.get("state", "unknown"))
        rows.append(
            WorkerRow(
                worker=str(w.get("worker")),
                pid=w.get("pid"),
                release=str(w.get("release", "")),
                state=state.replace("_", " "),
                tone=STATE_TONE.get(state, "info"),
                rss=format_bytes(rss),
                measure="PSS" if pss is not None else "RSS",
                limit=format_bytes(limit) if limit else "no limit",
                percent=round(percent, 1),
                soft_percent=round(100.0 * soft / limit, 1) if soft and limit else None,
                level=memory_level(rss, soft=soft, limit=limit),
                restarts=int(w.get("restarts") or 0),
                last_exit_reason=str(w.get("last_exit_reason") or "–"),
                uptime=format_seconds(w.get("uptime_s")),
            )
        )
    return rows


def sparkline(
    values: Sequence[float | None], *, width: float = 240, height: float = 48
) -> list[str]:
    """SVG polyline point lists (one per run of known values; gaps where there was no
    traffic), scaled so the largest value touches the top; all zeros lie on the bottom."""
    known = [v for v in values if v is not None and not math.isnan(v)]
    top = max(known, default=0.0) or 1.0
    step = width / max(1, len(values) - 1)
    runs: list[str] = []
    current: list[str] = []

    def close() -> None:
        if len(current) == 1:  # a lone minute: a short dash, or it would not show at all
            x, y = current[0].split(",")
            current.append(f"{float(x) + min(step, 4.0):.1f},{y}")
        if current:
            runs.append(" ".join(current))
        current.clear()

    for i, v in enumerate(values):
        if v is None or math.isnan(v):
            close()
            continue
        y = height - (v / top) * (height - 2) - 1
        current.append(f"{i * step:.1f},{y:.1f}")
    close()
    return runs


def latest_value(values: Sequence[float | None]) -> float | None:
    for v in reversed(values):
        if v is not None and not math.isnan(v):
            return v
    return None


@dataclass(frozen=True)
class EventsPage:
    events: list[Mapping[str, Any]]  # newest first
    page: int
    has_older: bool

    @staticmethod
    def limit_for(page: int) -> int:
        """How many of the newest events to ask for to fill ``page`` and know of one more."""
        return page * EVENTS_PER_PAGE + 1


def events_page(oldest_first: Sequence[Mapping[str, Any]], page: int) -> EventsPage:
    """Page ``page`` (1 = newest) of ``GET /events?limit=EventsPage.limit_for(page)``."""
    newest = list(reversed(oldest_first))
    start = (page - 1) * EVENTS_PER_PAGE
    return EventsPage(
        newest[start : start + EVENTS_PER_PAGE], page, len(newest) > start + EVENTS_PER_PAGE
    )


def details_text(details: Mapping[str, Any], limit: int = 240) -> str:
    """``key=value`` pairs of an event's details, shortened for a table cell."""
    text = " ".join(f"{k}={v}" for k, v in details.items())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def alert_rows(alerts: Sequence[Mapping[str, Any]], now: float) -> list[dict[str, Any]]:
    """``GET /alerts`` entries, firing first, each with a since-when and its runbook link."""
    rows = []
    for a in alerts:
        annotations = a.get("annotations") or {}
        since = a.get("fired_at") or a.get("active_since")
        rows.append(
            {
                "name": a.get("name", "unknown"),
                "severity": a.get("severity", ""),
                "state": a.get("state", ""),
                "since": format_time(since)
                if isinstance(since, int | float)
                else str(since or "–"),
                "for": format_seconds(now - since) if isinstance(since, int | float) else "–",
                "summary": annotations.get("summary", ""),
                "runbook": annotations.get("runbook_url", ""),
                "source": a.get("source", ""),
                "labels": {
                    k: v
                    for k, v in (a.get("labels") or {}).items()
                    if k not in {"severity", "service", "alertname"}
                },
            }
        )
    order = {"firing": 0, "pending": 1}
    return sorted(rows, key=lambda r: (order.get(r["state"], 2), r["name"]))


def release_rows(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``GET /releases`` newest first: state in words, the config diff as ``key: old → new``,
    the latest canary step's verdict."""
    stable = body.get("stable")
    rows = []
    for r in reversed(list(body.get("releases") or [])):
        if not isinstance(r, Mapping):
            continue
        diff = [
            f"{d.get('key')}: {d.get('old') if d.get('old') is not None else '(unset)'} → "
            f"{d.get('new') if d.get('new') is not None else '(unset)'}"
            for d in r.get("diff") or []
            if isinstance(d, Mapping)
        ]
        steps = [s for s in r.get("steps") or [] if isinstance(s, Mapping)]
        state = str(r.get("state", "unknown"))
        rows.append(
            {
                "id": str(r.get("id", "?")),
                "stable": r.get("id") == stable,
                "state": state.replace("_", " "),
                "tone": RELEASE_TONE.get(state, "info"),
                "created": format_time(r.get("created_at")),
                "created_by": str(r.get("created_by") or "–"),
                "reason": str(r.get("reason") or ""),
                "diff": diff,
                "model": str(r.get("model_sha256") or "")[:12] or "–",
                "last_step": details_text(steps[-1]) if steps else "",
            }
        )
    return rows


RELEASE_TONE = {
    "pending": "info",
    "refused": "bad",
    "canary": "warn",
    "stable": "good",
    "superseded": "info",
    "aborted": "bad",
    "rolled_back": "bad",
}


INCIDENT_TONE = {"open": "bad", "mitigated": "warn", "resolved": "good"}
_GRAPH_REF = re.compile(r"!\[([^\]]*)\]\(([\w.-]+\.png)\)")


def incident_rows(body: Any) -> list[dict[str, Any]]:
    """``GET /incidents`` newest first, status and severity in words."""
    items = body.get("incidents", []) if isinstance(body, Mapping) else body
    rows = []
    for i in items if isinstance(items, list) else []:
        if not isinstance(i, Mapping):
            continue
        status = str(i.get("status", "unknown"))
        rows.append(
            {
                "id": str(i.get("id", "?")),
                "title": str(i.get("title") or ""),
                "status": status,
                "tone": INCIDENT_TONE.get(status, "info"),
                "severity": str(i.get("severity") or "–"),
                "started": format_time(i.get("started_at")),
                "detected": format_time(i.get("detected_at")),
                "acknowledged": i.get("acknowledged_at") is not None,
                "sort": float(i.get("detected_at") or i.get("started_at") or 0.0),
            }
        )
    return sorted(rows, key=lambda r: r["sort"], reverse=True)


def incident_facts(incident: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The incident's who/when as (label, text) rows, times in UTC."""

    def names(key: str) -> str:
        return ", ".join(str(v) for v in incident.get(key) or []) or "–"

    return [
        ("Status", str(incident.get("status", "–"))),
        (
            "Severity",
            f"{incident.get('severity', '–')} (set by {incident.get('severity_set_by', '–')})",
        ),
        ("Started", format_time(incident.get("started_at"))),
        (
            "Detected",
            f"{format_time(incident.get('detected_at'))} by {incident.get('opened_by', '–')}",
        ),
        ("Acknowledged", format_time(incident.get("acknowledged_at"))),
        (
            "Mitigated",
            f"{format_time(incident.get('mitigated_at'))} {incident.get('mitigated_by') or ''}".strip(),
        ),
        (
            "Resolved",
            f"{format_time(incident.get('resolved_at'))} {incident.get('resolved_by') or ''}".strip(),
        ),
        ("Commander", str(incident.get("commander") or "–")),
        ("Alerts", names("alerts")),
        ("Releases", names("releases")),
        ("Workers", names("workers")),
    ]


def postmortem_html(markdown: str, graph_base: str) -> str:
    """The postmortem's Markdown as HTML (raw HTML in it is escaped, not rendered); its graph
    files (``name.png``) are served from ``graph_base``."""
    from markdown_it import MarkdownIt  # installed with Rich

    text = _GRAPH_REF.sub(lambda m: f"![{m.group(1)}]({graph_base}{m.group(2)})", markdown)
    html: str = MarkdownIt("commonmark", {"html": False}).enable("table").render(text)
    return html


PHASE_TONE = {"promoted": "good", "aborted": "bad", "refused": "bad"}
#: WindowStats fields compared canary vs stable, with their labels
COMPARED = [
    ("requests", "requests"),
    ("errors", "5xx answers"),
    ("error_ratio", "error ratio"),
    ("p95_ms", "p95 (ms)"),
    ("memory_mb", "memory (MB)"),
    ("memory_slope_mb_per_min", "memory slope (MB/min)"),
    ("oom_kills", "OOM kills"),
    ("limit_recycles", "limit recycles"),
    ("restarts", "restarts"),
    ("mean_confidence", "mean confidence"),
]


def _shown(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def rollout_view(body: Any) -> dict[str, Any] | None:
    """``GET /rollout``'s rollout (None when none ran): step, traffic share, phase in words, the
    latest analysis as canary-vs-stable rows with its verdict and reasons."""
    if not isinstance(body, Mapping):
        return None
    r = body.get("rollout")
    if not isinstance(r, Mapping):
        return None
    phase = str(r.get("phase", "unknown"))
    steps = r.get("steps") or []
    share = r.get("canary_share")
    analysis = r.get("last_analysis") if isinstance(r.get("last_analysis"), Mapping) else None
    rows = []
    if analysis is not None:
        canary = analysis.get("canary") or {}
        stable = analysis.get("stable") or {}
        rows = [
            (label, _shown(canary.get(key)), _shown(stable.get(key)))
            for key, label in COMPARED
            if key in canary or key in stable
        ]
    return {
        "release": str(r.get("release", "?")),
        "from_release": str(r.get("from_release") or "–"),
        "phase": phase.replace("_", " "),
        "tone": PHASE_TONE.get(phase, "warn"),
        "done": bool(r.get("done")),
        "step": int(r.get("step") or 0),
        "steps": len(steps) if isinstance(steps, list) else 0,
        "weight": r.get("weight"),
        "canary_workers": r.get("canary_workers"),
        "total_workers": r.get("total_workers"),
        "share": format_percent(share, 0) if isinstance(share, int | float) else "–",
        "started": format_time(r.get("started_at")),
        "finished": format_time(r.get("finished_at")) if r.get("finished_at") else None,
        "waiting": r.get("waiting"),
        "reason": r.get("reason"),
        "verdict": str(analysis.get("verdict")) if analysis else None,
        "reasons": [str(x) for x in (analysis.get("reasons") or [])] if analysis else [],
        "checks": [
            details_text(c) if isinstance(c, Mapping) else str(c)
            for c in (analysis.get("checks") or [])
        ]
        if analysis
        else [],
        "compared": rows,
        "analyses": r.get("analyses") or 0,
    }
