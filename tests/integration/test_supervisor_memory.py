"""Memory limits with real growth (the fault injector's leak_mb_per_request, dev profile):
soft limit -> graceful recycle; soft limit off -> OOMKilled (137) with peak RSS, under each
enforcement method this machine offers (kernel memory cgroup, RSS watchdog)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from falcon_platform.supervisor.enforcers import detect_enforcer
from falcon_platform.testing.supervisor import RunningSupervisor, start_supervisor, train_model

# serial: asserts the watchdog's reaction time (< 0.75 s) under a leak
pytestmark = [pytest.mark.integration, pytest.mark.serial]

SPEC = """
restart:
  initial_backoff: 0.5s
  max_backoff: 1s
  crash_loop_restarts: 20
"""
LIMIT_MB = 420  # a worker rests at ~220 MB: room for ~10 leaks of 20 MB
LEAK_MB = 20


def _require_cgroup() -> None:
    """Probed when a cgroup test runs (not at collection); a skip here, a failure under CI."""
    enforcer = detect_enforcer(f"probe-test-{os.getpid()}", prefer="auto")
    enforcer.close()
    if not enforcer.kernel_enforced:
        reason = "no writable memory cgroup (needs root + cgroup memory controller)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)


METHODS = ["watchdog", "cgroup"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_model(tmp_path_factory.getbasetemp() / "falcon-model-home")


def _start(tmp_path: Path, model_dir: Path, method: str, soft_percent: int) -> RunningSupervisor:
    if method == "cgroup":
        _require_cgroup()
    return start_supervisor(
        tmp_path,
        workers=1,
        spec_yaml=SPEC,
        model_dir=model_dir,
        env={
            "FALCON_FAULTS": f"leak_mb_per_request={LEAK_MB}",
            "FALCON_MEMORY_LIMIT_MB": str(LIMIT_MB),
            "FALCON_MEMORY_SOFT_LIMIT_PERCENT": str(soft_percent),
            "FALCON_MEMORY_ENFORCEMENT": method,
            # Zygote-forked workers share the model's pages, which the kernel charges to the
            # zygote: their limit is held by the watchdog. Fresh workers show the kernel's kill.
            "FALCON_ZYGOTE": "false" if method == "cgroup" else "true",
        },
    )


def _leak_until(
    sup: RunningSupervisor, kind: str, *, max_requests: int = 40
) -> tuple[list[float], dict[str, Any]]:
    """Send one leaking request every 0.4 s until an event of ``kind`` appears; returns the
    send times (the last one before a kill is the request that crossed the limit)."""
    sent: list[float] = []
    with httpx.Client(timeout=10) as client:
        for n in range(max_requests):
            try:
                sent.append(time.time())
                client.post(sup.url + "/infer", json={"text": f"leak {n}"})
            except httpx.HTTPError:
                pass  # the request that crossed the hard limit died with its worker
            time.sleep(0.4)
            found = sup.events(kind)
            if found:
                return sent, found[0]
    raise AssertionError(f"no {kind} after {max_requests} leaking requests:\n{sup.log_tail()}")


@pytest.mark.parametrize("method", METHODS)
def test_soft_limit_recycles_gracefully(tmp_path: Path, model_dir: Path, method: str) -> None:
    """At 80% of the limit the worker is drained and replaced (exit 0, Recycled), never OOM-killed."""
    sup = _start(tmp_path, model_dir, method, soft_percent=80)
    try:
        first = sup.status()["workers"][0]
        expected = "watchdog" if method == "watchdog" else "cgroup-v1"
        assert sup.status()["supervisor"]["memory_enforcement"] == expected
        _, recycle = _leak_until(sup, "limit_recycle")
        # The limits apply to PSS (what the worker owns), never above its RSS.
        assert recycle["details"]["pss_bytes"] >= 0.8 * LIMIT_MB * 2**20
        assert recycle["details"]["pss_bytes"] < LIMIT_MB * 2**20
        assert recycle["details"]["rss_bytes"] >= recycle["details"]["pss_bytes"]
        sup.wait_until(
            lambda s: (
                s["workers"][0]["state"] == "ready" and s["workers"][0]["pid"] != first["pid"]
            ),
            timeout=60,
            what="the recycled worker's replacement",
        )
        exited = sup.events("worker_exited")[0]["details"]
        assert exited["reason"] == "Recycled"
        assert exited["exit_code"] == 0
        assert exited["oom_killed"] is False
        assert not sup.events("restart_scheduled")  # a planned recycle is not a crash: no back-off
    finally:
        assert sup.stop() == 0


@pytest.mark.parametrize("method", METHODS)
def test_hard_limit_oom_kills_with_137_and_peak_rss(
    tmp_path: Path, model_dir: Path, method: str
) -> None:
    """Soft limit off: at the hard limit the worker dies as OOMKilled (137) with its peak memory
    in the journal, is restarted after its back-off, and the OOM counter moves."""
    sup = _start(tmp_path, model_dir, method, soft_percent=0)
    try:
        sent, exited = _leak_until(sup, "worker_exited")
        details = exited["details"]
        assert details["reason"] == "OOMKilled"
        assert details["exit_code"] == 137
        assert details["oom_killed"] is True
        assert details["oom_enforcement"] == ("watchdog" if method == "watchdog" else "cgroup-v1")
        assert details["peak_rss_bytes"] >= 0.85 * LIMIT_MB * 2**20
        if method == "watchdog":
            assert details["watchdog_pss_bytes"] >= LIMIT_MB * 2**20
            assert details["watchdog_rss_bytes"] >= details["watchdog_pss_bytes"]
            killed_at = details["watchdog_killed_at"]
            crossing_sent = max(t for t in sent if t <= killed_at)
            reaction = killed_at - crossing_sent
            print(
                f"\nRSS watchdog: SIGKILL {reaction * 1000:.0f} ms after the crossing request was sent"
            )
            assert reaction < 0.75  # sampling every 200 ms, plus the request itself, plus noise
        sup.wait_until(lambda s: s["workers"][0]["state"] == "ready", timeout=60, what="restart")
        metrics = httpx.get(sup.control_url + "/metrics", timeout=10).text
        assert 'falcon_worker_oom_kills_total{release="r0",worker="w1"} 1.0' in metrics
        table = sup.cli("status")
        assert "OOMKilled (137)" in table.stdout
    finally:
        assert sup.stop() == 0
