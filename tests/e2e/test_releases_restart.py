"""Releases outlive the supervisor: a restart resumes the last stable release (issue 14).

Real processes (2 workers; gate load test off and a one-step canary to keep deploys short).
Which release the workers run shows in their answers: r1 refuses texts over 50 characters,
r2 over 100, the base release r0 takes both test texts. On one home, in turn:

1. r1 and r2 are deployed and promoted; the supervisor is stopped (SIGTERM) and started
   again with no command: every worker runs r2 (``release_resumed``). Before, it ran r0 and
   the deploy was silently gone.
2. The supervisor is SIGKILLed (its workers follow it) and started again: r2 again.
3. r3 (r2's settings and a copy of the model) is deployed; the supervisor stops, the copy is
   deleted, it starts again: r3 cannot be resumed, r0 runs, ``falcon status`` and
   ``falcon releases`` say so in one line (``release_resume_refused``).
   ``falcon rollback --to r1`` -- a release created three supervisors ago -- works.
4. ``falcon up --base`` after that rollback: r0 runs on purpose (``release_resume_skipped``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
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
MID = "a fine product that works" * 3  # 75 characters: over r1's limit, under r2's
LONG = "a fine product that works well " * 4  # 124 characters: over r1's and r2's
R0, R1, R2 = (200, 200), (422, 422), (200, 422)  # (MID, LONG) statuses per release


def _deploy(sup: RunningSupervisor, *args: str) -> dict[str, Any]:
    done = sup.cli("deploy", *args, "--json", timeout=120)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{sup.log_tail()}"
    rollout: dict[str, Any] = json.loads(done.stdout)["rollout"]
    assert rollout["phase"] == "promoted", rollout
    return rollout


def _statuses(sup: RunningSupervisor, text: str, n: int = 6) -> int:
    """The one status of ``n`` fresh-connection requests (any worker may take each)."""
    found = {
        httpx.post(sup.url + "/infer", json={"text": text}, timeout=10,
                   headers={"Connection": "close"}).status_code
        for _ in range(n)
    }  # fmt: skip
    assert len(found) == 1, f"workers disagree on a {len(text)}-character text: {found}"
    return found.pop()


def _answers(sup: RunningSupervisor) -> tuple[int, int]:
    return _statuses(sup, MID), _statuses(sup, LONG)


def _all_on(sup: RunningSupervisor, release: str) -> dict[str, Any]:
    return sup.wait_until(
        lambda s: (
            sorted((w["release"], w["state"]) for w in s["workers"])
            == [(release, "ready")] * WORKERS
        ),
        timeout=60,
        what=f"every worker on {release} and ready",
    )


def _stopped(sup: RunningSupervisor) -> None:
    assert sup.stop() == 0, sup.log_tail()


def _killed(sup: RunningSupervisor) -> None:
    """SIGKILL the supervisor alone (no drain); its workers follow it (parent-death signal)."""
    pids = [w["pid"] for w in sup.status()["workers"] if w["pid"]]
    os.kill(sup.proc.pid, signal.SIGKILL)
    sup.proc.wait(timeout=10)
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in pids):
        assert time.monotonic() < deadline, f"workers {pids} outlived their supervisor"
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # not ours: the kernel's init reaps them
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    return status[0] != "Z"


def test_a_restarted_supervisor_resumes_the_last_stable_release(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    model_dir = train_model(tmp_path_factory.getbasetemp() / "falcon-model-home")

    def start(*args: str) -> RunningSupervisor:
        return start_supervisor(
            tmp_path, workers=WORKERS, spec_yaml=SPEC, model_dir=model_dir, args=args
        )

    sup = start()
    try:
        _deploy(sup, "--set", "FALCON_MAX_TEXT_CHARS=50", "--reason", "short texts only")
        assert _answers(sup) == R1
        _deploy(sup, "--set", "FALCON_MAX_TEXT_CHARS=100", "--reason", "longer texts")
        assert _answers(sup) == R2
    finally:
        sup.proc.send_signal(signal.SIGTERM)  # what systemd sends
        _stopped(sup)

    # 1. no command: the workers start on r2
    sup = start()
    try:
        status = _all_on(sup, "r2")
        assert status["supervisor"]["desired"] == {"r2": WORKERS}
        assert _answers(sup) == R2
        [resumed] = sup.events("release_resumed")
        assert (resumed["release"], resumed["details"]["base"]) == ("r2", "r0")
        assert resumed["details"]["overrides"] == ["FALCON_MAX_TEXT_CHARS"]
        listed = json.loads(sup.cli("releases", "list", "--json").stdout)
        assert (listed["stable"], listed["resume"]) == ("r2", None)
    except BaseException:
        sup.stop()
        raise
    _killed(sup)

    copy = tmp_path / "model-copy"
    shutil.copytree(model_dir, copy)
    sup = start()  # 2. after a SIGKILL: r2 again
    try:
        _all_on(sup, "r2")
        assert _answers(sup) == R2
        assert sup.events("supervisor_unclean_shutdown")
        assert sorted(e["release"] for e in sup.events("release_resumed")) == ["r2", "r2"]
        # 3. r3: r2's settings and the model copy, which is deleted before the next start
        _deploy(sup, "--model", str(copy), "--reason", "the same model from another place")
        _all_on(sup, "r3")
    finally:
        _stopped(sup)
    shutil.rmtree(copy)

    sup = start()
    try:
        _all_on(sup, "r0")
        assert _answers(sup) == R0
        [refused] = sup.events("release_resume_refused")
        assert refused["release"] == "r3"
        assert "model sha256" in refused["details"]["reason"], refused
        shown = " ".join(sup.cli("status").stdout.split())
        assert (
            "release: running r0 (base); last stable r3 could not be resumed: model sha256 "
            in shown
        )
        assert "`falcon rollback --to r3` after fixing it, or `falcon deploy`" in shown
        listed_text = " ".join(sup.cli("releases").stdout.split())
        assert "last stable r3 could not be resumed" in listed_text
        # back to r1, which a supervisor three starts ago created
        back = sup.cli("rollback", "--to", "r1", "--reason", "r1 was better")
        assert back.returncode == 0, f"{back.stdout}\n{back.stderr}\n{sup.log_tail()}"
        _all_on(sup, "r1")
        assert _answers(sup) == R1
        assert [e["release"] for e in sup.events("release_restored")] == ["r1"]
        assert "could not be resumed" not in sup.cli("status").stdout  # r1 runs: nothing to say
    finally:
        _stopped(sup)

    # 4. the env file as it is, on purpose
    sup = start("--base")
    try:
        _all_on(sup, "r0")
        assert _answers(sup) == R0
        [skipped] = sup.events("release_resume_skipped")
        assert skipped["release"] == "r1"
        assert sorted(e["release"] for e in sup.events("release_resumed")) == ["r2", "r2"]
        listed = json.loads(sup.cli("releases", "list", "--json").stdout)
        assert listed["stable"] == "r0"
        assert "falcon up --base" in listed["resume"]["line"]
    finally:
        _stopped(sup)
