"""Releases outlive the supervisor: `falcon rollback --to r1` after `falcon up` was restarted.

Real processes (2 workers; gate load test off and a one-step canary to keep deploys short):
r1 and r2 are deployed and promoted, the supervisor is stopped and started again on the same
home, and a rollback to r1 -- a release the new supervisor did not create -- puts every
worker on r1's settings, as the workers' answers show (r1 refuses texts over 50 characters).
Before, the rollback was refused: "r1 was created before this supervisor started".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from falcon_platform.testing.supervisor import RunningSupervisor, start_supervisor, train_model

pytestmark = pytest.mark.e2e

WORKERS = 2
SPEC = """
canary:
  steps:
    - {weight: 100, pause: 0s}
gates:
  load_test: false
"""


def _deploy(sup: RunningSupervisor, *args: str) -> dict[str, Any]:
    done = sup.cli("deploy", *args, "--json", timeout=120)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{sup.log_tail()}"
    rollout: dict[str, Any] = json.loads(done.stdout)["rollout"]
    assert rollout["phase"] == "promoted", rollout
    return rollout


def _long_text_statuses(sup: RunningSupervisor, n: int = 10) -> set[int]:
    """The statuses of ``n`` fresh-connection requests whose text is over r1's limit."""
    text = "a fine product that works well " * 4  # 124 characters
    return {
        httpx.post(sup.url + "/infer", json={"text": text}, timeout=10,
                   headers={"Connection": "close"}).status_code
        for _ in range(n)
    }  # fmt: skip


def test_a_release_from_before_a_supervisor_restart_can_be_rolled_back_to(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    model_dir = train_model(tmp_path_factory.getbasetemp() / "falcon-model-home")
    sup = start_supervisor(tmp_path, workers=WORKERS, spec_yaml=SPEC, model_dir=model_dir)
    try:
        r1 = _deploy(sup, "--set", "FALCON_MAX_TEXT_CHARS=50", "--reason", "short texts only")
        assert _long_text_statuses(sup) == {422}
        r2 = _deploy(sup, "--set", "FALCON_BATCH_MAX_SIZE=8", "--reason", "smaller batches")
    finally:
        assert sup.stop() == 0, sup.log_tail()
    assert (r1["release"], r2["release"]) == ("r1", "r2")

    again = start_supervisor(tmp_path, workers=WORKERS, spec_yaml=SPEC, model_dir=model_dir)
    try:
        record = json.loads(again.cli("releases", "show", "r1", "--json").stdout)
        assert record["state"] == "superseded"
        assert _long_text_statuses(again) == {200}  # the restarted supervisor runs r0
        back = again.cli("rollback", "--to", "r1", "--reason", "r1 was better", "--json",
                         timeout=120)  # fmt: skip
        assert back.returncode == 0, f"{back.stdout}\n{back.stderr}\n{again.log_tail()}"
        assert json.loads(back.stdout)["to_release"] == "r1"
        status = again.wait_until(
            lambda s: (
                sorted((w["release"], w["state"]) for w in s["workers"])
                == [("r1", "ready")] * WORKERS
            ),
            timeout=60,
            what="every worker on r1 and ready",
        )
        assert status["supervisor"]["desired"]["r1"] == WORKERS
        assert again.status()["supervisor"]["releases"]["r1"]["env"] == {
            "FALCON_MAX_TEXT_CHARS": "50"
        }
        assert _long_text_statuses(again) == {422}  # every worker runs r1's limit again
        assert [e["release"] for e in again.events("release_restored")] == ["r1"]
        listed = json.loads(again.cli("releases", "list", "--json").stdout)
        assert listed["stable"] == "r1"
    finally:
        again.stop()
