"""A result built from the recorder: ratios, warnings, strict JSON, the HTML report."""

from __future__ import annotations

import json
import re

from falcon_platform.loadtest.plan import LoadPlan
from falcon_platform.loadtest.recorder import Recorder
from falcon_platform.loadtest.report import render_report
from falcon_platform.loadtest.result import LoadResult, build_result
from falcon_platform.loadtest.server import ServerSide


def recorded() -> Recorder:
    """100 scheduled over 2 s: 90 answered 200 (10 ms), 5 answered 503, 3 timed out, 2 dropped."""
    rec = Recorder()
    for i in range(100):
        t = i * 0.02
        rec.scheduled(t)
        if i >= 98:
            rec.dropped(t)
            continue
        rec.sent(t, lag_s=0.005 if i % 10 == 0 else 0.0001)
        if i < 90:
            rec.response(t, 200, 0.010, 0.009)
        elif i < 95:
            rec.response(t, 503, 0.002, 0.002)
        else:
            rec.failure(t, "timeout", 10.0)
    return rec


def build() -> LoadResult:
    return build_result(recorded(), LoadPlan.constant(50, 2), ServerSide(False, "no control API"),
                        target="http://127.0.0.1:1", model="open", endpoint="infer",
                        texts="corpus", connections=8, elapsed_s=2.1, started_at=0,
                        aborted=False)  # fmt: skip


def test_ratios_and_counts_by_hand() -> None:
    r = build()
    assert (r.scheduled, r.sent, r.dropped, r.responses, r.errors) == (100, 98, 2, 95, 8)
    assert r.error_ratio == 8 / 98
    assert r.dropped_ratio == 0.02
    assert r.achieved_rate_ratio == 0.98
    assert r.target_rps == 50
    m = r.metrics()
    assert m["timeouts"] == 3
    assert m["memory_slope_mb_per_min"] is None


def test_lag_and_drops_are_warned_about() -> None:
    r = build()
    text = " ".join(r.warnings)
    assert "fell behind its schedule" in text  # 10% of sends 5 ms late: p99 = 5 ms > 2 ms
    assert "2 requests dropped" in text


def test_server_thresholds_fail_with_the_reason_when_there_is_no_server_side() -> None:
    r = build().judged(["memory_slope_mb_per_min < 5", "p50_ms < 50"])
    assert [v.passed for v in r.verdicts] == [False, True]
    assert "no control API" in r.verdicts[0].shown()


def test_json_is_strict_and_has_the_series() -> None:
    body = json.loads(json.dumps(build().to_dict(), allow_nan=False))
    assert body["requests"]["dropped"] == 2
    assert [s["scheduled"] for s in body["series"]] == [50, 50]
    assert body["series"][0]["target"] == 50


def test_report_is_one_self_contained_page() -> None:
    page = render_report(build().judged(["p99_ms < 1"]))
    assert page.startswith("<!doctype html>")
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 2  # latency, rate
    assert not re.search(r'(src|href)="(http|//)', page)  # nothing fetched from elsewhere
    assert "FAILED" in page
