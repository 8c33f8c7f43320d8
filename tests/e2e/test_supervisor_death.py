"""The supervisor's own death (issue 11, finding 12): SIGKILL of a real supervisor under load.

The choice (docs/ARCHITECTURE.md "When the supervisor dies"): its workers drain and exit
(PR_SET_PDEATHSIG -> SIGTERM), so no worker runs unsupervised (no memory limit, no probes);
systemd (`falcon render systemd`, Restart=always, RestartSec=2) starts a new supervisor, which
journals the unclean shutdown it finds. This test does what systemd does: SIGKILL, wait
RestartSec, start `falcon up` again on the same home and ports. It measures what a client saw.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from falcon_platform.testing.supervisor import (
    LoadGenerator,
    RunningSupervisor,
    start_supervisor,
    train_model,
)

pytestmark = pytest.mark.e2e

RESTART_SEC = 2.0  # the rendered unit's RestartSec


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_model(tmp_path_factory.getbasetemp() / "death-model-home")


def _start_again(old: RunningSupervisor, workers: int) -> RunningSupervisor:
    log_path = old.log_path.with_name("supervisor-2.log")
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "falcon_platform.cli", "up", "--workers", str(workers)],
            env=old.env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=old.home.parent,
            start_new_session=True,
        )
    return RunningSupervisor(proc, old.home, old.port, old.control_port, old.env, log_path)


def test_sigkill_of_the_supervisor_under_load(tmp_path: Path, model_dir: Path) -> None:
    sup = start_supervisor(tmp_path, workers=2, model_dir=model_dir)
    second: RunningSupervisor | None = None
    unclean_events: list[dict[str, object]] = []
    unavailable: list[dict[str, object]] = []
    try:
        old_workers = [w["pid"] for w in sup.status()["workers"]]
        with LoadGenerator(sup.url, rps=80, timeout=5.0) as load:
            time.sleep(3)
            killed_at = time.monotonic()
            os.kill(sup.proc.pid, signal.SIGKILL)
            sup.proc.wait(timeout=10)
            # Its workers drain and exit (no unsupervised worker is left behind).
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and any(psutil.pid_exists(p) for p in old_workers):
                time.sleep(0.05)
            workers_gone_s = time.monotonic() - killed_at
            assert not [p for p in old_workers if psutil.pid_exists(p)], "orphaned workers"
            time.sleep(max(0.0, RESTART_SEC - (time.monotonic() - killed_at)))
            second = _start_again(sup, workers=2)
            second.wait_ready(2, timeout=120)
            back_s = time.monotonic() - killed_at
            time.sleep(3)
        result = load.result()
        unclean_events = second.events("supervisor_unclean_shutdown")
        unavailable = second.events("service_available")
    finally:
        if second is not None:
            second.stop()
        sup.stop(timeout=10)
    refused = result.errors.get("connect_error", 0)
    print(
        f"\nSIGKILL of the supervisor at 80 rps: workers gone {workers_gone_s:.2f} s after, "
        f"serving again {back_s:.2f} s after (restart after {RESTART_SEC:g} s, as systemd); "
        f"client saw {result.describe()}; connection refusals {refused}"
    )
    answered_503 = sum(e["details"]["answered_503"] for e in unavailable)
    print(f"the new supervisor answered {answered_503} requests with 503 while its workers booted")
    [unclean] = unclean_events
    assert unclean["details"]["previous_pid"] == sup.proc.pid
    assert unclean["details"]["down_for_s"] is not None
    assert unclean["details"]["down_for_s"] >= RESTART_SEC - 0.5
    # The outage is bounded by the restart: requests before and after it succeed.
    assert result.statuses.get(200, 0) >= 80 * 5
    assert workers_gone_s < 15  # the drain grace (10 s in these tests) + margin
