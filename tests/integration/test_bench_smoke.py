"""The benchmark script runs end to end and tells the truth about the cache.

Not a timed test: it asserts what the numbers mean (unique texts are never cache hits, the
repeated text always is, nothing failed or was lost), not how big they are.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from falcon_platform.testing.servers import find_binary

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).parents[2]


def test_bench_reports_every_scenario_with_honest_cache_hit_ratios(tmp_path: Path) -> None:
    find_binary("wrk")
    find_binary("taskset")
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--json", "--duration", "1",
         "--warmup", "1", "--home", str(tmp_path), "--supervisor", "2"],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    report = json.loads(out.stdout)
    rows = {(r["target"], r["scenario"]): r for r in report["results"]}
    assert set(rows) == {
        ("bare-asgi", "unique"),
        ("falcon /infer", "unique"),
        ("falcon /infer", "repeated"),
        ("falcon /v2 infer", "unique"),
        ("falcon /v2 infer", "repeated"),
        ("falcon up worker 1/2", "unique"),
        ("falcon up worker 2/2", "unique"),
    }
    for r in rows.values():  # memory from /proc: PSS never above RSS, peak never below rest
        assert 0 < r["rest_pss_mb"] <= r["rest_rss_mb"], r
        assert 0 < r["peak_pss_mb"] <= r["peak_rss_mb"], r
        assert r["peak_rss_mb"] >= r["rest_rss_mb"], r
    workers = [r for (target, _), r in rows.items() if target.startswith("falcon up worker")]
    # forked workers share the zygote's pages: PSS counts a share of them, RSS all of them
    assert all(w["peak_pss_mb"] < w["peak_rss_mb"] * 0.9 for w in workers), workers
    for (target, scenario), r in rows.items():
        assert r["rps"] > 0, (target, r)
        assert (r["non_2xx"], r["socket_errors"]) == (0, 0), (target, r)
        if target != "bare-asgi" and not target.startswith("falcon up"):
            # warm-up and measured runs use different texts, so "unique" means no hits at all
            assert r["cache_hit_ratio"] == (0.0 if scenario == "unique" else 1.0), (target, r)
    assert report["request_log_lost"]
    assert all(line.endswith(" 0.0") for line in report["request_log_lost"])


def test_bench_stores_redis_measures_four_store_configurations(tmp_path: Path) -> None:
    """A private redis-server and PostgreSQL; every configuration answers, batches and loses
    no request-log row."""
    find_binary("wrk")
    find_binary("redis-server")
    find_binary("pg_ctl")
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--json", "--duration", "1",
         "--warmup", "1", "--home", str(tmp_path), "--stores", "redis", "--idempotency-keys"],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    report = json.loads(out.stdout)
    rows = {r["target"]: r for r in report["results"]}
    assert set(rows) == {"bare-asgi", "falcon embedded", "falcon postgres log",
                         "falcon redis cache+idem", "falcon redis+postgres"}  # fmt: skip
    for target, r in rows.items():
        assert r["rps"] > 0, r
        assert (r["non_2xx"], r["socket_errors"]) == (0, 0), r
        if target != "bare-asgi":
            assert r["mean_batch"] >= 1.0, r
            assert r["cache_hit_ratio"] == 0.0, r
            assert r["cpu_us_per_request"] > 0, r
    assert len(report["request_log_lost"]) == 4
    assert all(line.endswith(" 0.0") for line in report["request_log_lost"])
