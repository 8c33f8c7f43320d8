"""`falcon up` whose workers all fail to boot says so and never looks healthy (issue 11, 0).

Before: a prod `falcon up --override-gate` whose workers could not boot kept running, looked
healthy on the command line and every request hung. Now requests get a fast 503 (while the
boots are retried and after they are given up), the command line says that Falcon is not
serving and why, and the journal records it. The supervisor keeps running for the operator
(`falcon status`, then `falcon restart` once fixed), as a crash-looping pod stays visible.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from falcon_platform.testing.supervisor import start_supervisor

pytestmark = pytest.mark.integration

SPEC = """
restart:
  initial_backoff: 1s
  max_backoff: 2s
  boot_failure_max_tries: 2
"""


def test_up_with_workers_that_cannot_boot_answers_503_and_says_it_is_not_serving(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "no-such-model"
    sup = start_supervisor(
        tmp_path,
        workers=2,
        spec_yaml=SPEC,
        model_dir=missing,
        wait_ready=False,
    )
    try:
        # While the boots are retried, a request is answered (503), never left hanging.
        deadline = time.monotonic() + 60
        answered = None
        while time.monotonic() < deadline and sup.proc.poll() is None:
            try:
                answered = httpx.post(sup.url + "/infer", json={"text": "hi"}, timeout=15)
                break
            except httpx.ConnectError:
                time.sleep(0.2)  # the socket is not open yet
        assert answered is not None, sup.log_tail()
        assert answered.status_code == 503, answered.text
        assert answered.json()["error"] == "no_ready_worker"
        assert "retry-after" in answered.headers
        event = sup.wait_for_event(lambda e: True, kind="deployment_unbootable", timeout=90)
        assert event["details"]["why"].startswith("no worker could start (2 failed to boot)")
        assert str(missing) in event["details"]["why"]  # the boot message names what is missing
        # Given up: still a fast 503 with the reason, and the supervisor never says healthy.
        after = httpx.post(sup.url + "/infer", json={"text": "hi"}, timeout=5)
        assert after.status_code == 503
        assert "failed to start" in after.json()["detail"]
        assert int(after.headers["retry-after"]) == 30
        health = sup.cli("check-health")
        assert health.returncode == 1
        status = sup.status()["supervisor"]
        assert status["healthy"] is False
        assert status["unbootable"] == event["details"]["why"]
        deadline = time.monotonic() + 10  # the command line says it (Rich, on stderr)
        while "Falcon is NOT serving" not in sup.log_tail(200) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "Falcon is NOT serving: every request is answered 503" in sup.log_tail(200)
    finally:
        assert sup.stop() == 0
