"""The seed's leak, measured by `falcon loadtest`: slope, time to the limit, OOM kill, exit 99.

A worker leaking 2 MB per request (FALCON_FAULTS) at 10 req/s must grow 10 * 2 * 60 = 1,200
MB/min. Its limit (300 MB) is reached within the 20-s run (a worker rests at ~100 MB since it
serves the model with NumPy only: ~10 s of leaking), so the supervisor OOM-kills it and
restarts it: the fit spans both processes (one slope, an intercept each) and must still
find 1,200 MB/min within 25%, with a finite projected time to the limit.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from falcon_platform.testing.supervisor import start_supervisor, train_model

pytestmark = pytest.mark.e2e

SPEC = """
workers:
  memory_limit_mb: 300
  memory_soft_limit_percent: 0
restart:
  initial_backoff: 500ms
  max_backoff: 1s
loadtest:
  sample_interval: 250ms
"""
RATE, LEAK_MB = 10, 2
EXPECTED_MB_PER_MIN = RATE * LEAK_MB * 60  # 1,200


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_model(tmp_path_factory.getbasetemp() / "falcon-model-home")


def test_leak_slope_matches_the_known_rate_and_every_memory_threshold_fails(
    tmp_path: Path, model_dir: Path
) -> None:
    sup = start_supervisor(tmp_path, workers=1, spec_yaml=SPEC, model_dir=model_dir,
                           env={"FALCON_PROFILE": "dev",
                                "FALCON_FAULTS": f"leak_mb_per_request={LEAK_MB}"})  # fmt: skip
    try:
        done = sup.cli("loadtest", "run", "--rate", str(RATE), "--duration", "20s",
                       "--texts", "repeated", "--json",
                       "--threshold", "memory_slope_mb_per_min < 5",
                       "--threshold", "time_to_memory_limit_min > 60",
                       "--threshold", "restarts <= 0", "--threshold", "oom_kills <= 0",
                       "--threshold", "memory_max_mb < 250", timeout=120)  # fmt: skip
    finally:
        sup.stop()
    body = json.loads(done.stdout)
    [w] = body["server"]["workers"]
    slope, stderr = w["memory_slope_mb_per_min"], w["memory_slope_stderr_mb_per_min"]
    print(f"\nleak {LEAK_MB} MB/request at {RATE} req/s: expected {EXPECTED_MB_PER_MIN} MB/min, "
          f"measured {slope:.0f} ± {stderr:.0f} MB/min over {w['fit_points']} samples in "
          f"{w['fit_segments']} processes; time to limit {w['time_to_limit_min']} min; "
          f"restarts {w['restarts']}, OOM kills {w['oom_kills']}")  # fmt: skip
    assert done.returncode == 99, done.stderr
    assert slope == pytest.approx(EXPECTED_MB_PER_MIN, rel=0.25)
    assert w["reaches_limit"] is True
    assert w["time_to_limit_min"] is not None
    assert math.isfinite(w["time_to_limit_min"])
    assert w["time_to_limit_min"] < 1  # 300 MB at 1,200 MB/min is seconds away
    assert w["oom_kills"] >= 1
    assert w["restarts"] >= 1
    failed = {line.split(": ", 1)[1].split(" (")[0] for line in done.stderr.splitlines()
              if line.startswith("threshold failed: ")}  # fmt: skip
    assert failed == {"memory_slope_mb_per_min < 5", "time_to_memory_limit_min > 60",
                      "restarts <= 0", "oom_kills <= 0", "memory_max_mb < 250"}  # fmt: skip
