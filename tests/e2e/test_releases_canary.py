"""Deploys end to end under load, real processes (staging profile: faults allowed, warned).

One supervisor (3 workers, 500 MB limit) serves 30 req/s of fresh-connection traffic the
whole time while, in order: the seed's leaking release is refused by the load gate; the same
release with --skip-gate is aborted by the canary before any OOM kill; a release answering
20% errors is aborted at its first analysis; a rollout is aborted by hand; a good release is
promoted; `falcon rollback` returns to the first release. Each abort pages (FalconCanaryAborted)
and all of them make one incident. Canary pauses are seconds here (spec overrides).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from falcon_platform.testing.supervisor import (
    LoadGenerator,
    RunningSupervisor,
    start_supervisor,
    train_model,
)

pytestmark = pytest.mark.e2e

WORKERS, LIMIT_MB, RATE = 3, 500, 30
SPEC = f"""
workers:
  memory_limit_mb: {LIMIT_MB}
restart:
  initial_backoff: 500ms
  max_backoff: 1s
canary:
  steps:
    - {{weight: 33, pause: 3s}}
    - {{weight: 67, pause: 2s}}
  interval: 2s
  min_requests: 20
  abort_min_requests: 5
gates:
  load_test_duration: 3s
  load_test_rps: 20
"""
SEED_LEAK = "FALCON_FAULTS=leak_mb_per_request=5\n"


@pytest.fixture(scope="module")
def sup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSupervisor]:
    model_dir = train_model(tmp_path_factory.getbasetemp() / "falcon-model-home")
    running = start_supervisor(tmp_path_factory.mktemp("canary"), workers=WORKERS,
                               spec_yaml=SPEC, model_dir=model_dir,
                               env={"FALCON_PROFILE": "staging"})  # fmt: skip
    try:
        yield running
    finally:
        running.stop()


def _deploy(sup: RunningSupervisor, *args: str) -> tuple[int, dict[str, Any], str]:
    done = sup.cli("deploy", *args, "--json", timeout=180)
    body = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}
    return done.returncode, body, done.stderr


def _leak_env(tmp_path: Path) -> Path:
    path = tmp_path / "seed.env"
    path.write_text(SEED_LEAK)
    return path


def _events(sup: RunningSupervisor, kind: str, release: str) -> list[dict[str, Any]]:
    return [e for e in sup.events(kind) if e["release"] == release]


def _canary_alerts(body: dict[str, Any], release: str) -> list[dict[str, Any]]:
    return [
        a
        for a in body["alerts"]
        if a["name"] == "FalconCanaryAborted" and a["labels"].get("release") == release
    ]


def _assert_paged_once(sup: RunningSupervisor, release: str, reason: str) -> None:
    """FalconCanaryAborted fires for the release (GET /alerts), and the abort is one incident
    (the alert attached to the one opened by rollout_aborted; aborts in this module come
    within incidents.reopen_window of each other, so they share it)."""
    body = sup.wait_for_json(
        "/alerts",
        lambda b: any(a["state"] == "firing" for a in _canary_alerts(b, release)),
        timeout=30,
        what=f"FalconCanaryAborted firing for {release}",
    )
    [alert] = _canary_alerts(body, release)
    assert (alert["severity"], alert["labels"]["reason"]) == ("critical", reason)
    [aborted] = _events(sup, "rollout_aborted", release)
    [paged] = [
        e
        for e in _events(sup, "alert_firing", release)
        if e["details"]["name"] == "FalconCanaryAborted"
    ]
    print(f"{release}: FalconCanaryAborted firing {paged['ts'] - aborted['ts']:.1f} s after "
          "rollout_aborted")  # fmt: skip
    assert f"release {release} aborted" in alert["annotations"]["summary"]
    assert alert["annotations"]["runbook_url"].endswith("#falconcanaryaborted")
    incidents = sup.wait_for_json(
        "/incidents",
        lambda b: any(
            "FalconCanaryAborted" in i["alerts"] and release in i["releases"]
            for i in b["incidents"]
        ),
        timeout=15,
        what=f"the alert attached to the incident of {release}'s abort",
    )["incidents"]
    assert len(incidents) == 1, incidents
    keys = [t["key"] for t in incidents[0]["triggers"]]
    assert f"rollout_aborted:{release}" in keys
    assert not any(k.startswith("alert:FalconCanaryAborted") for k in keys), keys


def test_the_seed_leak_is_refused_by_the_gate_before_any_user_sees_it(
    sup: RunningSupervisor, tmp_path: Path
) -> None:
    with LoadGenerator(sup.url, rps=RATE) as load:
        code, body, err = _deploy(sup, "--env-file", str(_leak_env(tmp_path)),
                                  "--reason", "turn on the debug cache")  # fmt: skip
    tally = load.result()
    assert code == 3, err
    r = body["rollout"]
    assert r["phase"] == "refused"
    assert "memory" in r["reason"]
    numbers = r["gate"]["numbers"]
    print(f"\ngate: {numbers}; users: {tally.describe()}")
    assert numbers["memory_slope_mb_per_min"] > 1000  # 5 MB x ~20 req/s = 6,000 MB/min
    assert tally.failed == 0, tally.describe()
    release = r["release"]
    assert _events(sup, "worker_started", release) == []  # no pool worker ever ran it
    assert [e["kind"] for e in _events(sup, "gate_refused", release)] == ["gate_refused"]
    record = json.loads(sup.cli("releases", "show", release, "--json").stdout)
    assert record["state"] == "refused"


def test_the_seed_leak_forced_through_is_aborted_before_any_oom_kill(
    sup: RunningSupervisor, tmp_path: Path
) -> None:
    with LoadGenerator(sup.url, rps=RATE) as load:
        code, body, err = _deploy(sup, "--env-file", str(_leak_env(tmp_path)),
                                  "--reason", "debug cache, again",
                                  "--skip-gate", "drill: prove the canary")  # fmt: skip
    tally = load.result()
    assert code == 4, err
    r = body["rollout"]
    release = r["release"]
    print(f"\nseed leak forced through: {r['seconds_from_first_canary_traffic_to_abort']} s from "
          f"first canary traffic to abort; canary share {r['canary_workers']}/"
          f"{r['total_workers']} workers; canary peak memory {r['canary_peak_memory_mb']} MB "
          f"of {r['memory_limit_mb']:.0f} MB; users: {tally.describe()}; "
          f"reason: {r['reason']}")  # fmt: skip
    assert r["phase"] == "aborted"
    assert "memory" in r["reason"]
    exits = _events(sup, "worker_exited", release)
    analyses = [(e["time"], e["details"]["step"], e["details"]["verdict"], e["details"]["canary"],
                 e["details"]["reasons"]) for e in _events(sup, "canary_analysis", release)]  # fmt: skip
    oom = [(e["time"], e["worker"], e["details"]["peak_rss_bytes"]) for e in exits
           if e["details"]["oom_killed"]]  # fmt: skip
    assert oom == [], f"{oom} {analyses} {_events(sup, 'limit_recycle', release)}"
    assert tally.failed <= 0.01 * tally.total, tally.describe()
    assert r["canary_peak_memory_mb"] < LIMIT_MB
    [aborted] = _events(sup, "rollout_aborted", release)
    assert aborted["details"]["from_release"] == r["from_release"]
    assert aborted["details"]["to_release"] == release
    status = sup.status()
    assert status["supervisor"]["desired"][r["from_release"]] == WORKERS
    assert status["supervisor"]["desired"][release] == 0
    record = json.loads(sup.cli("releases", "show", release, "--json").stdout)
    assert record["gate"] == {"verdict": "skipped", "reason": "drill: prove the canary"}
    assert record["state"] == "aborted"
    assert record["steps"][-1]["verdict"] == "fail"
    assert aborted["details"]["cause"] == "analysis"
    _assert_paged_once(sup, release, "analysis")


def test_a_release_answering_errors_is_aborted_at_its_first_analysis(
    sup: RunningSupervisor,
) -> None:
    with LoadGenerator(sup.url, rps=RATE) as load:
        code, body, err = _deploy(sup, "--set", "FALCON_FAULTS=error_ratio=0.2,seed=7",
                                  "--reason", "error drill", "--skip-gate", "drill")  # fmt: skip
    tally = load.result()
    assert code == 4, err
    r = body["rollout"]
    print(f"\nerror_ratio=0.2: aborted after {r['analyses']} analysis in "
          f"{r['seconds_from_first_canary_traffic_to_abort']} s; users: {tally.describe()}")  # fmt: skip
    assert r["analyses"] == 1
    assert "error ratio" in r["reason"]
    [analysis] = _events(sup, "canary_analysis", r["release"])
    assert analysis["details"]["verdict"] == "fail"
    _assert_paged_once(sup, r["release"], "analysis")


def test_a_rollout_aborted_by_hand_pages_too(sup: RunningSupervisor) -> None:
    """`falcon rollout abort` right after `falcon deploy --detach`: reason manual."""
    code, body, err = _deploy(sup, "--set", "FALCON_LOG_LEVEL=INFO", "--reason", "abort me",
                              "--skip-gate", "drill", "--detach")  # fmt: skip
    assert code == 0, err
    release = body["rollout"]["release"]
    done = sup.cli("rollout", "abort", "--reason", "pager test")
    assert done.returncode == 0, done.stderr
    sup.wait_for_json("/rollout", lambda b: b["rollout"]["phase"] == "aborted", timeout=60,
                      what=f"{release} aborted")  # fmt: skip
    [aborted] = _events(sup, "rollout_aborted", release)
    assert aborted["details"]["cause"] == "manual"
    _assert_paged_once(sup, release, "manual")


def test_a_good_release_is_promoted_then_rolled_back_without_a_failed_request(
    sup: RunningSupervisor,
) -> None:
    before = sup.status()["supervisor"]
    stable = max(before["desired"], key=lambda r: before["desired"][r])
    with LoadGenerator(sup.url, rps=RATE) as load:
        code, body, err = _deploy(sup, "--set", "FALCON_LOG_LEVEL=ERROR",
                                  "--reason", "quieter logs")  # fmt: skip
    tally = load.result()
    r = body["rollout"]
    print(f"\ngood release: {r['phase']} after {r['analyses']} analyses; {tally.describe()}")
    assert code == 0, f"{err} {r['reason']} {r['gate']} {r.get('last_analysis')}"
    assert r["phase"] == "promoted"
    assert r["gate"]["verdict"] == "passed"
    assert tally.failed == 0, tally.describe()
    release = r["release"]
    listed = json.loads(sup.cli("releases", "list", "--json").stdout)
    states = {x["id"]: x["state"] for x in listed["releases"]}
    assert listed["stable"] == release
    assert states[release] == "stable"
    assert states[stable] == "superseded"
    shown = sup.cli("releases", "show", release).stdout
    assert "log_level" in shown
    assert "step 2 (67%): pass" in shown, shown

    with LoadGenerator(sup.url, rps=RATE) as load:
        back = sup.cli("rollback", "--reason", "prove rollback", "--json", timeout=180)
    tally = load.result()
    assert back.returncode == 0, back.stderr
    done = json.loads(back.stdout)
    print(f"rollback {done}; {tally.describe()}")
    assert done["to_release"] == stable
    assert tally.failed == 0, tally.describe()
    desired = sup.status()["supervisor"]["desired"]
    assert desired[stable] == WORKERS
    assert desired[release] == 0
    by_hand = [
        e for e in _events(sup, "rollback_finished", stable) if not e["details"]["automatic"]
    ]
    assert [e["details"]["from_release"] for e in by_hand] == [release]
