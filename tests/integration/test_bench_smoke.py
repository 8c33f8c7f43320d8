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
         "--warmup", "1", "--home", str(tmp_path)],
        capture_output=True, text=True, timeout=240, check=True,
    )  # fmt: skip
    report = json.loads(out.stdout)
    rows = {(r["target"], r["scenario"]): r for r in report["results"]}
    assert set(rows) == {
        ("bare-asgi", "unique"),
        ("falcon /infer", "unique"),
        ("falcon /infer", "repeated"),
        ("falcon /v2 infer", "unique"),
        ("falcon /v2 infer", "repeated"),
    }
    for (target, scenario), r in rows.items():
        assert r["rps"] > 0, (target, r)
        assert (r["non_2xx"], r["socket_errors"]) == (0, 0), (target, r)
        if target != "bare-asgi":
            # warm-up and measured runs use different texts, so "unique" means no hits at all
            assert r["cache_hit_ratio"] == (0.0 if scenario == "unique" else 1.0), (target, r)
    assert report["request_log_lost"]
    assert all(line.endswith(" 0.0") for line in report["request_log_lost"])
