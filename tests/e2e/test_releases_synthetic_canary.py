"""Synthetic canary traffic, real processes: a canary step with no user traffic at all.

With ``canary.synthetic_rps`` off (the default) the step waits and says why; with it on, the
supervisor sends synthetic requests to the canary worker's private admin socket, the judge
counts them, the step reaches a verdict and the release is promoted -- and none of those
requests is counted as user traffic (``falcon_requests_total`` of the canary release stays 0).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from falcon_platform.testing.supervisor import RunningSupervisor, start_supervisor, train_model

pytestmark = pytest.mark.e2e

WORKERS, MIN_REQUESTS, RPS = 2, 40, 20


def _spec(synthetic_rps: float) -> str:
    return f"""
canary:
  steps:
    - {{weight: 50, pause: 2s}}
  interval: 1s
  min_requests: {MIN_REQUESTS}
  abort_min_requests: 5
  inconclusive_timeout: 60s
  synthetic_rps: {synthetic_rps}
  synthetic_max_duration: 20s
gates:
  load_test: false
"""


def _rollout(sup: RunningSupervisor) -> dict[str, Any]:
    done = sup.cli("rollout", "status", "--json")
    assert done.returncode == 0, done.stderr
    body: dict[str, Any] = json.loads(done.stdout)["rollout"] or {}
    return body


def _user_requests(sup: RunningSupervisor, release: str) -> float:
    """falcon_requests_total of ``release``'s workers, from the control API's /metrics."""
    text = httpx.get(sup.control_url + "/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("falcon_requests_total{") and f'release="{release}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_canary_without_user_traffic_waits_or_is_judged_on_synthetic_traffic(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    model_dir = train_model(tmp_path_factory.getbasetemp() / "falcon-model-home")

    off = start_supervisor(tmp_path / "off", workers=WORKERS, spec_yaml=_spec(0),
                           model_dir=model_dir)  # fmt: skip
    try:
        started = off.cli("deploy", "--set", "FALCON_BATCH_MAX_SIZE=8", "--reason", "no traffic",
                          "--detach", "--json")  # fmt: skip
        assert started.returncode == 0, started.stderr
        deadline, waiting = time.monotonic() + 60, ""
        while time.monotonic() < deadline and "synthetic_rps is 0" not in waiting:
            rollout = _rollout(off)
            assert rollout.get("phase") in ("gate", "canary"), rollout
            waiting = rollout.get("waiting") or ""
            time.sleep(0.5)
        assert "too little canary traffic" in waiting, waiting
        assert "canary.synthetic_rps is 0: no synthetic traffic" in waiting, waiting
        assert off.events("canary_synthetic_traffic") == []
        assert off.cli("rollout", "abort", "--reason", "test over").returncode == 0
    finally:
        off.stop()

    on = start_supervisor(tmp_path / "on", workers=WORKERS, spec_yaml=_spec(RPS),
                          model_dir=model_dir)  # fmt: skip
    try:
        t0 = time.monotonic()
        done = on.cli("deploy", "--set", "FALCON_BATCH_MAX_SIZE=8", "--reason", "no traffic",
                      "--json", timeout=120)  # fmt: skip
        seconds = time.monotonic() - t0
        body = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}
        rollout = body.get("rollout", {})
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{on.log_tail()}"
        assert rollout["phase"] == "promoted", rollout
        release = rollout["release"]
        events = on.events("canary_synthetic_traffic")
        phases = sorted(e["details"]["phase"] for e in events)
        assert phases == ["started", "stopped"], events
        [stopped] = [e["details"] for e in events if e["details"]["phase"] == "stopped"]
        [passed] = [e["details"] for e in on.events("canary_analysis")
                    if e["release"] == release and e["details"]["verdict"] == "pass"]  # fmt: skip
        print(f"\nsynthetic on: promoted in {seconds:.1f} s; synthetic {stopped}; passing "
              f"analysis: {passed['canary']['requests']} canary requests "
              f"({passed['canary']['synthetic_requests']} synthetic)")  # fmt: skip
        assert stopped["workers"] == 1  # the canary worker only
        assert stopped["sent"] >= MIN_REQUESTS
        assert stopped["failed"] == 0, stopped
        assert passed["canary"]["requests"] >= MIN_REQUESTS
        assert passed["canary"]["synthetic_requests"] == passed["canary"]["requests"]
        assert _user_requests(on, release) == 0  # no SLO counts a synthetic request
        synthetic = httpx.get(on.control_url + "/metrics", timeout=10).text
        assert re.search(rf'falcon_synthetic_requests_total\{{[^}}]*release="{release}"', synthetic)
    finally:
        on.stop()
