"""The console's pure decisions: memory levels, formatting, worker rows, paging, chart points."""

from __future__ import annotations

import pytest

from falcon_platform.control.console import views

MiB = 1024 * 1024


@pytest.mark.parametrize(
    ("rss", "level"),
    [
        (None, "unknown"),
        (0, "ok"),
        (399, "ok"),
        (400, "soft"),
        (499, "soft"),
        (500, "limit"),
        (900, "limit"),
    ],
)
def test_memory_level_turns_at_the_soft_and_the_hard_limit(rss: int | None, level: str) -> None:
    assert views.memory_level(rss, soft=400, limit=500) == level


def test_memory_level_without_limits_is_ok() -> None:
    assert views.memory_level(10**12, soft=None, limit=None) == "ok"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "–"),
        (512, "512 B"),
        (1536, "1.5 KiB"),
        (98_562_048, "94.0 MiB"),
        (3 * 1024**3, "3.0 GiB"),
    ],
)
def test_format_bytes(value: int | None, text: str) -> None:
    assert views.format_bytes(value) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "–"), (42.9, "42s"), (125, "2m 5s"), (3725, "1h 2m"), (3 * 86400 + 7200, "3d 2h")],
)
def test_format_seconds(seconds: float | None, text: str) -> None:
    assert views.format_seconds(seconds) == text


def test_format_time_is_utc() -> None:
    assert views.format_time(0) == "1970-01-01 00:00:00Z"
    assert views.format_percent(0.12345, 2) == "12.35%"
    assert views.format_percent(None) == "–"


def test_worker_rows_from_status() -> None:
    status = {
        "supervisor": {"memory_limit_bytes": 512 * MiB, "memory_soft_limit_bytes": 400 * MiB},
        "workers": [
            {"worker": "w1", "pid": 10, "release": "r0", "state": "ready", "rss_bytes": 128 * MiB,
             "memory_limit_bytes": 512 * MiB, "restarts": 0, "uptime_s": 61},
            {"worker": "w2", "pid": None, "release": "r0", "state": "backoff", "rss_bytes": 600 * MiB,
             "pss_bytes": 450 * MiB,
             "memory_limit_bytes": 512 * MiB, "restarts": 3, "last_exit_reason": "OOMKilled"},
        ],
    }  # fmt: skip
    w1, w2 = views.worker_rows(status)
    assert (w1.worker, w1.state, w1.tone, w1.level, w1.percent) == (
        "w1",
        "ready",
        "good",
        "ok",
        25.0,
    )
    assert w1.soft_percent == pytest.approx(78.1, abs=0.05)  # 400/512
    assert w1.rss == "128.0 MiB"
    assert w1.uptime == "1m 1s"
    assert w1.last_exit_reason == "–"
    assert w1.measure == "RSS"  # no PSS sampled yet
    # the limits apply to PSS: 450 MiB is over the soft limit, not over the hard one (RSS is)
    assert (w2.state, w2.tone, w2.level, w2.restarts) == ("backoff", "warn", "soft", 3)
    assert (w2.measure, w2.rss) == ("PSS", "450.0 MiB")
    assert w2.last_exit_reason == "OOMKilled"


def test_events_page_newest_first_with_an_older_page() -> None:
    total = views.EVENTS_PER_PAGE * 2 + 5
    oldest_first = [{"id": i} for i in range(total)]
    assert views.EventsPage.limit_for(1) == views.EVENTS_PER_PAGE + 1
    first = views.events_page(oldest_first[-views.EventsPage.limit_for(1) :], 1)
    assert first.events[0]["id"] == total - 1
    assert len(first.events) == views.EVENTS_PER_PAGE
    assert first.has_older
    third = views.events_page(oldest_first, 3)
    assert [e["id"] for e in third.events] == [4, 3, 2, 1, 0]
    assert not third.has_older


def test_sparkline_scales_to_the_largest_value_and_leaves_gaps() -> None:
    runs = views.sparkline([0.0, 5.0, None, 10.0], width=30, height=12)
    # x = index * 10; y = 12 - v/10 * 10 - 1
    assert runs == ["0.0,11.0 10.0,6.0", "30.0,1.0 34.0,1.0"]  # a lone point: a 4-unit dash
    assert views.sparkline([None, None]) == []
    assert views.sparkline([0.0, 0.0], width=10, height=10) == ["0.0,9.0 10.0,9.0"]


def test_alert_rows_firing_first_with_runbook_and_age() -> None:
    alerts = [
        {"name": "B", "state": "pending", "severity": "warning", "active_since": 100.0, "annotations": {}},
        {"name": "A", "state": "firing", "severity": "critical", "active_since": 40.0, "fired_at": 50.0,
         "labels": {"severity": "critical", "worker": "w1"},
         "annotations": {"summary": "s", "runbook_url": "https://x/RUNBOOK.md#a"}},
    ]  # fmt: skip
    first, second = views.alert_rows(alerts, now=170.0)
    assert (first["name"], first["for"], first["runbook"]) == (
        "A",
        "2m 0s",
        "https://x/RUNBOOK.md#a",
    )
    assert first["labels"] == {"worker": "w1"}
    assert (second["name"], second["for"]) == ("B", "1m 10s")


def test_details_text_is_shortened() -> None:
    assert views.details_text({"a": 1, "b": "x"}) == "a=1 b=x"
    long = views.details_text({"k": "v" * 500}, limit=20)
    assert len(long) == 20
    assert long.endswith("…")


def test_release_rows_newest_first_with_diff_and_stable_marked() -> None:
    body = {
        "stable": "r1",
        "releases": [
            {"id": "r1", "state": "stable", "created_at": 0.0, "created_by": "ops", "reason": "start",
             "model_sha256": "abcdef0123456789", "diff": [], "steps": []},
            {"id": "r2", "state": "rolled_back", "created_at": 60.0, "reason": "debug on",
             "diff": [{"key": "FALCON_LOG_LEVEL", "old": None, "new": "DEBUG"}],
             "steps": [{"step": 1, "verdict": "abort"}]},
        ],
    }  # fmt: skip
    r2, r1 = views.release_rows(body)
    assert (r2["id"], r2["state"], r2["tone"], r2["stable"]) == ("r2", "rolled back", "bad", False)
    assert r2["diff"] == ["FALCON_LOG_LEVEL: (unset) → DEBUG"]
    assert r2["last_step"] == "step=1 verdict=abort"
    assert (r1["stable"], r1["model"], r1["created"]) == (
        True,
        "abcdef012345",
        "1970-01-01 00:00:00Z",
    )


def test_incident_rows_newest_first_and_facts() -> None:
    body = {
        "incidents": [
            {"id": "INC-1", "status": "resolved", "severity": "P2", "title": "old", "detected_at": 10.0},
            {"id": "INC-2", "status": "open", "severity": "P0", "title": "new", "detected_at": 20.0,
             "started_at": 15.0},
        ]
    }  # fmt: skip
    new, old = views.incident_rows(body)
    assert (new["id"], new["tone"], new["acknowledged"]) == ("INC-2", "bad", False)
    assert (old["id"], old["tone"]) == ("INC-1", "good")
    facts = dict(
        views.incident_facts(
            {**body["incidents"][1], "opened_by": "falcon", "workers": ["w1", "w2"]}
        )
    )
    assert facts["Started"] == "1970-01-01 00:00:15Z"
    assert facts["Detected"] == "1970-01-01 00:00:20Z by falcon"
    assert facts["Workers"] == "w1, w2"
    assert facts["Acknowledged"] == "–"


def test_postmortem_html_escapes_raw_html_and_points_graphs_at_the_console() -> None:
    html = views.postmortem_html(
        "# Title\n\n<img src=x onerror=alert(1)>\n\n![Error ratio](errors.png)\n\n| a | b |\n|---|---|\n| 1 | 2 |\n",
        "/console/incidents/INC-1/graphs/",
    )
    assert "<h1>Title</h1>" in html
    assert "<img src=x" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert '<img src="/console/incidents/INC-1/graphs/errors.png" alt="Error ratio"' in html
    assert "<table>" in html


def test_rollout_view_step_share_and_analysis() -> None:
    body = {
        "stable": "r1",
        "rollout": {
            "release": "r2", "from_release": "r1", "phase": "canary", "done": False, "step": 2,
            "steps": [{"weight": 10}, {"weight": 50}, {"weight": 100}], "weight": 50,
            "canary_workers": 2, "total_workers": 4, "canary_share": 0.5, "started_at": 0.0,
            "waiting": None, "analyses": 3,
            "last_analysis": {
                "verdict": "fail", "reasons": ["errors 12% > 10%"], "checks": [{"name": "errors", "ok": False}],
                "canary": {"requests": 200, "error_ratio": 0.12, "p95_ms": 40.5},
                "stable": {"requests": 600, "error_ratio": 0.001, "p95_ms": None},
            },
        },
    }  # fmt: skip
    ro = views.rollout_view(body)
    assert ro is not None
    assert (ro["phase"], ro["tone"], ro["step"], ro["steps"], ro["share"]) == (
        "canary",
        "warn",
        2,
        3,
        "50%",
    )
    assert ro["verdict"] == "fail"
    assert ro["reasons"] == ["errors 12% > 10%"]
    assert ro["compared"] == [
        ("requests", "200", "600"),
        ("error ratio", "0.12", "0.001"),
        ("p95 (ms)", "40.5", "–"),
    ]
    assert ro["checks"] == ["name=errors ok=False"]
    assert views.rollout_view({"rollout": None, "stable": "r1"}) is None
    assert views.rollout_view("nonsense") is None
