"""Impact arithmetic against hand-computed numbers, the timeline, the SLO table, and the
postmortem rendered from a fixed bundle (golden file)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from falcon_platform.config.spec import SLOSpec, Spec
from falcon_platform.events.journal import Event
from falcon_platform.incidents.bundle import assemble, bucket_series, memory_growth_facts
from falcon_platform.incidents.graphs import render_graphs
from falcon_platform.incidents.impact import (
    RequestRow,
    Unanswered,
    compute_impact,
    estimate_unanswered,
    percentile,
)
from falcon_platform.incidents.model import Incident, Severity, Status, Trigger
from falcon_platform.incidents.postmortem import render_markdown, suggest_actions, write_postmortem
from falcon_platform.incidents.timeline import build_timeline
from falcon_platform.testing.golden import assert_golden

T0 = datetime(2026, 2, 12, 14, 35, tzinfo=UTC).timestamp()  # the seed's incident
GOLDEN = Path(__file__).parents[1] / "golden" / "incidents" / "postmortem.md"


def _rows() -> list[RequestRow]:
    """Baseline: 100 ok before T0 (1 per 3 s). Incident T0..T0+100: 200 requests from 4
    clients (i % 4), even i on w1, odd on w2. All 50 of c3 (odd i: w2) fail 503; the 30 of
    c2 with i < 120 (even i: w1) fail 504."""
    rows = [RequestRow(T0 - 300 + 3 * i, "w1", "r1", 200, 10.0, "c1") for i in range(100)]
    for i in range(200):
        client = f"c{i % 4}"
        status = 200
        if client == "c3":
            status = 503
        elif client == "c2" and i < 120:
            status = 504
        rows.append(RequestRow(T0 + i * 0.5, f"w{1 + i % 2}", "r2", status, 10.0 + i, client))
    return rows


def test_impact_numbers_by_hand() -> None:
    rows = _rows()
    unanswered = [Unanswered("w1", "r2", T0 + 50, 3, T0 + 49, 1)]
    im = compute_impact(
        rows,
        window=(T0, T0 + 100),
        baseline=rows[:100],
        slo=SLOSpec(),
        unanswered=unanswered,
        slo_window_requests=10_000,
    )
    assert im.answered_5xx == 50 + 30
    assert im.unanswered == 3
    assert im.unanswered_bound == 1
    assert im.failed == 83
    assert im.requests == 203
    assert im.by_status == {"200": 120, "503": 50, "504": 30}
    assert (im.shed, im.timeouts) == (50, 30)
    assert im.error_rate == 83 / 203
    assert (im.clients, im.clients_affected) == (4, 2)
    # latencies 10..209 ms: nearest-rank p99 of 200 values = the 198th = 207 ms
    assert im.p99_ms == 207.0
    assert im.baseline_requests == 100
    assert im.baseline_error_rate == 0.0
    assert im.per_release == {"r2": {"requests": 203, "failed": 83}}
    assert im.per_worker["w1"] == {"requests": 103, "failed": 3 + 30, "unanswered": 3}
    assert im.per_worker["w2"] == {"requests": 100, "failed": 50}
    # (1 - 0.999) * 10000 = 10 failures allowed; 83 spent
    assert round(im.budget_allowed, 6) == 10.0
    assert round(im.budget_consumed, 6) == 8.3
    assert [(r.name, r.breach) for r in im.slo] == [
        ("Availability", True),
        ("p95 latency", False),
        ("p99 latency", False),
        ("Error rate", True),
    ]


def test_percentile_and_buckets_and_unanswered() -> None:
    assert percentile([], 99) == 0.0
    assert percentile([5.0], 99) == 5.0
    assert percentile([float(i) for i in range(1, 101)], 99) == 99.0
    rows = [
        RequestRow(10.0 + i * 0.1, "w", "r", 500 if i < 5 else 200, 1.0, None) for i in range(20)
    ]
    s = bucket_series(rows, 10.0, 12.0, 1.0)
    assert s["rps"] == [10.0, 10.0]
    assert s["error_ratio"] == [0.5, 0.0]
    # w1: 20 answered in the 5 s before its death at t=100, 500 ms each: Little's law
    # 4/s x 0.5 s = 2 in flight; its gauge said 4 at 99.5: bound |2 - 4| = 2.
    # w2: no rows, no gauge: 0, bound 1.
    before = [RequestRow(95.0 + i * 0.25, "w1", "r1", 200, 500.0, None) for i in range(20)]
    found = estimate_unanswered(
        [("w1", "r1", 100.0), ("w2", None, 100.0)],
        {"w1": [(98.0, 1.0), (99.5, 4.0), (100.5, 0.0)]},
        before,
    )
    assert [(u.worker, u.in_flight, u.scraped_at, u.bound) for u in found] == [
        ("w1", 2, 99.5, 2),
        ("w2", 0, None, 1),
    ]


def test_memory_growth_per_request() -> None:
    """w1 serves 100 requests between 600 MB and 1,090 MB: 4.9 MB per request; w2 is flat."""
    rows = [RequestRow(T0 + i * 0.5, "w1", "r7", 200, 5.0, "c") for i in range(100)]
    rows += [RequestRow(T0 + i * 0.5, "w2", "r7", 200, 5.0, "c") for i in range(100)]
    memory = {
        "w1": [(T0 - 0.1, 600e6), (T0 + 25, 850e6), (T0 + 49.9, 1090e6)],
        "w2": [(T0 - 0.1, 300e6), (T0 + 49.9, 300.5e6)],
    }
    facts = memory_growth_facts(memory, rows, T0, T0 + 60)
    assert facts == [
        "Memory of worker w1 grew 4.9 MB per request (600 -> 1090 MB over 100 requests)."
    ]


def _events() -> list[Event]:
    return [
        Event(T0 - 40, "rollout_started", release="r2", details={"by": "alice"}),
        Event(
            T0,
            "worker_exited",
            "r2",
            "w1",
            {
                "reason": "OOMKilled",
                "oom_killed": True,
                "peak_rss_bytes": 1_073_000_000,
                "memory_limit_bytes": 1_073_741_824,
            },
        ),
        Event(T0 + 1, "restart_scheduled", "r2", "w1"),
        Event(
            T0 + 20,
            "alert_firing",
            "r2",
            None,
            {
                "name": "FalconHighErrorRate",
                "severity": "critical",
                "annotations": {"summary": "More than 10% of requests are failing"},
            },
        ),
        Event(
            T0 + 21,
            "incident_opened",
            "r2",
            None,
            {"incident": "INC-2026-02-12-001", "severity": "P1", "automatic": True},
        ),
        Event(T0 + 22, "incident_opened", None, None, {"incident": "INC-OTHER", "automatic": True}),
        Event(T0 + 40, "rollback_started", "r2", None, {"to_release": "r1"}),
        Event(
            T0 + 60,
            "incident_note",
            None,
            None,
            {"incident": "INC-2026-02-12-001", "by": "bob", "text": "leak | 5 MB/request"},
        ),
        Event(T0 + 90, "alert_resolved", "r2", None, {"name": "FalconHighErrorRate"}),
        Event(
            T0 + 100,
            "incident_mitigated",
            None,
            None,
            {"incident": "INC-2026-02-12-001", "automatic": True},
        ),
    ]


def test_timeline_rows() -> None:
    rows = build_timeline(_events(), "INC-2026-02-12-001")
    assert [r.kind for r in rows] == [
        "rollout_started",
        "worker_exited",
        "alert_firing",
        "incident_opened",
        "rollback_started",
        "incident_note",
        "alert_resolved",
        "incident_mitigated",
    ]
    by_kind = {r.kind: r for r in rows}
    assert by_kind["rollout_started"].automatic is False  # alice started it
    assert by_kind["worker_exited"].automatic is True
    assert "OOMKilled at 1073 MB (limit 1074 MB)" in by_kind["worker_exited"].event
    assert by_kind["rollback_started"].decision is True
    assert by_kind["incident_note"].automatic is False
    assert rows[0].time == "14:34:20"


def test_timeline_says_which_release_a_restarted_supervisor_ran() -> None:
    """A supervisor restart during an incident: resumed, or not and why (issue 14)."""
    events = [
        Event(ts=T0, kind="release_resumed", release="r2", details={"base": "r0"}),
        Event(ts=T0 + 1, kind="release_resume_refused", release="r3",
              details={"base": "r0", "reason": "model sha256 aaaa then, bbbb now"}),
    ]  # fmt: skip
    resumed, refused = build_timeline(events)
    assert (resumed.event, resumed.action, resumed.decision) == (
        "Supervisor resumed release r2", "the last stable release (base r0)", False)  # fmt: skip
    assert refused.event == "Release r3 could not be resumed at start"
    assert refused.action == "base r0 started instead: model sha256 aaaa then, bbbb now"
    assert refused.decision is True


def _incident() -> Incident:
    return Incident(
        id="INC-2026-02-12-001",
        title="More than 10% of requests are failing",
        severity=Severity.P1,
        status=Status.MITIGATED,
        started_at=T0,
        detected_at=T0 + 21,
        mitigated_at=T0 + 100,
        mitigated_by="falcon (every trigger cleared)",
        commander="bob",
        responders=("bob",),
        acknowledged_at=T0 + 50,
        triggers=(
            Trigger("alert:FalconHighErrorRate{}", "alert", "x", T0 + 20, T0 + 20, False, T0 + 90),
        ),
        alerts=("FalconHighErrorRate",),
        releases=("r2",),
    )


def _bundle() -> dict:  # type: ignore[type-arg]
    return assemble(
        _incident(),
        events=_events(),
        rows=_rows(),
        spec=Spec(),
        now=T0 + 3600,
        inflight={"w1": [(T0 - 0.5, 2.0)]},
        memory={"w1": [(T0 - 30, 600e6), (T0 - 1, 1_070e6)], "w2": [(T0 - 30, 300e6)]},
        memory_limit_bytes=1_073_741_824,
        scrape_interval_s=1.0,
        slo_window_requests=1_000_000,
        actions=[
            {
                "id": "AI-7",
                "incident": "INC-2026-02-12-001",
                "category": "Prevent",
                "description": "Remove the debug flag",
                "owner": "@eng",
                "due": "2026-02-15",
                "status": "DONE",
                "link": None,
            },
        ],
        overdue_actions=[
            {
                "id": "AI-2",
                "incident": "INC-2026-01-15-045",
                "category": "Respond",
                "description": "Practice rollback",
                "owner": "@team",
                "due": "2026-02-01",
                "status": "TODO",
                "link": None,
            },
        ],
    )


def test_bundle_and_golden_postmortem(tmp_path: Path) -> None:
    bundle = _bundle()
    im = bundle["impact"]
    # Death: w1 OOM at T0. Little's law: 1 request (10 ms) in the 5 s before: 0 in flight;
    # its gauge said 2: bound 2.
    assert (im["unanswered"], im["unanswered_bound"], im["answered_5xx"], im["failed"]) == (
        0,
        2,
        80,
        80,
    )
    assert bundle["window"] == {
        "start": T0,
        "end": T0 + 100,
        "baseline_start": T0 - 300,
        "ongoing": False,
    }
    assert {m["kind"] for m in bundle["markers"]} == {
        "deploy",
        "kill",
        "alert",
        "incident",
        "rollback",
    }
    assert [a["category"] for a in suggest_actions(bundle)] == ["Prevent", "Detect"]
    text = render_markdown(bundle)
    assert "| **Requests Affected** | 80 failed of 200 (80 answered 5xx, 0 ± 2 never" in text
    assert "leak \\| 5 MB/request" in text  # a pipe cannot break the table
    assert "INC-OTHER" not in text
    assert "| AI-7 | Remove the debug flag | @eng | 2026-02-15 | DONE |" in text
    assert "| AI-2 | INC-2026-01-15-045 | Practice rollback | @team | 2026-02-01 | TODO |" in text
    assert_golden(GOLDEN, text)
    written = write_postmortem(bundle, tmp_path, graphs=render_graphs(bundle))
    names = sorted(p.name for p in written)
    assert "INC-2026-02-12-001.md" in names
    assert "INC-2026-02-12-001-memory.png" in names
    assert "INC-2026-02-12-001-error_ratio.svg" in names
    png = (tmp_path / "INC-2026-02-12-001-memory.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(png) > 5000
    assert (tmp_path / "INC-2026-02-12-001.md").read_text() == text
    page = (tmp_path / "INC-2026-02-12-001.html").read_text()
    assert page.count('src="data:image/png;base64,') == 4  # self-contained
    assert "<td>80 failed of 200" in page
    assert "<script" not in page
