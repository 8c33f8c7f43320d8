"""Real supervisor, real workers, real signals: a hung worker is replaced; a boot failure is not
retried in a tight loop and shows CrashLoopBackOff."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest

from falcon_platform.testing.supervisor import start_supervisor, train_model

pytestmark = pytest.mark.integration

SPEC = """
restart:
  initial_backoff: 0.5s
  max_backoff: 2s
  jitter: 0.1
  crash_loop_restarts: 2
  crash_loop_window: 5m
  boot_failure_max_tries: 3
probes:
  period: 0.5s
  timeout: 0.5s
  failure_threshold: 3
  kill_grace: 2s
"""


class WatchdogPings:
    """A systemd notify socket that counts the supervisor loop's WATCHDOG=1 pings.

    With ``WATCHDOG_USEC=2`` a ping is due at every pass of the loop, so each datagram is
    one pass (signals, reap, reconcile) observed from outside. A thread reads them as they
    come (the supervisor drops pings a full queue cannot take).
    """

    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="falcon-notify-", dir="/tmp")  # short: sun_path
        self.path = os.path.join(self._dir, "notify.sock")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(self.path)
        self._sock.settimeout(0.2)
        self._count = 0
        self._changed = threading.Condition()
        self._closed = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def env(self) -> dict[str, str]:
        return {"NOTIFY_SOCKET": self.path, "WATCHDOG_USEC": "2"}

    def _read(self) -> None:
        while not self._closed:
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            if b"WATCHDOG=1" in data.split(b"\n"):
                with self._changed:
                    self._count += 1
                    self._changed.notify_all()

    def wait_for_more(self, count: int, timeout: float) -> None:
        """Block until ``count`` more passes of the loop were seen (fails after ``timeout``)."""
        with self._changed:
            target = self._count + count
            ok = self._changed.wait_for(lambda: self._count >= target, timeout)
        assert ok, f"the supervisor loop did not pass {count} more times in {timeout} s"

    def close(self) -> None:
        self._closed = True
        self._reader.join(5)
        self._sock.close()
        shutil.rmtree(self._dir, ignore_errors=True)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_model(tmp_path_factory.getbasetemp() / "falcon-model-home")


def test_hung_worker_is_liveness_killed_and_replaced(tmp_path: Path, model_dir: Path) -> None:
    """SIGSTOP a worker: /healthz times out 3x -> liveness_kill (SIGTERM, SIGKILL after the grace),
    a new process takes the slot and becomes ready; the journal tells the story."""
    sup = start_supervisor(tmp_path, workers=2, spec_yaml=SPEC, model_dir=model_dir)
    try:
        victim = sup.status()["workers"][0]
        os.kill(victim["pid"], signal.SIGSTOP)
        stopped_at = time.time()
        status = sup.wait_until(
            lambda s: any(
                w["worker"] == victim["worker"]
                and w["state"] == "ready"
                and w["pid"] != victim["pid"]
                for w in s["workers"]
            ),
            timeout=60,
            what="the hung worker's replacement to be ready",
        )
        replaced_at = time.time()
        kills = sup.events("liveness_kill")
        assert [k["worker"] for k in kills] == [victim["worker"]]
        assert kills[0]["details"]["why"] == "liveness probe failed"
        assert kills[0]["details"]["failures"] >= 3
        exited = [e for e in sup.events("worker_exited") if e["worker"] == victim["worker"]]
        assert exited[0]["details"]["reason"] == "LivenessKilled"
        assert exited[0]["details"]["signal"] == "SIGKILL"  # a stopped process ignores SIGTERM
        assert exited[0]["details"]["exit_code"] == 137
        # Detection is the probes' doing, in order: the kill came after the stop and after
        # three failed probes, and the replacement after the kill. How long each step took
        # (3 x 0.5 s probes + 2 s grace + back-off + boot) is printed, not asserted: the
        # 60 s wait above bounds it, whatever the machine's speed.
        assert stopped_at < kills[0]["ts"] < exited[0]["ts"] <= replaced_at
        worker = next(w for w in status["workers"] if w["worker"] == victim["worker"])
        assert worker["restarts"] == 1
        assert worker["last_exit_reason"] == "LivenessKilled"
        print(
            f"hung worker: killed {kills[0]['ts'] - stopped_at:.2f}s after SIGSTOP, "
            f"replacement ready {replaced_at - stopped_at:.2f}s after"
        )
    finally:
        assert sup.stop() == 0


def test_boot_failure_is_not_retried_in_a_tight_loop(tmp_path: Path) -> None:
    """A bad model path: each try waits its back-off, the supervisor gives up after 3 tries,
    says why (status, check-health, journal), and shows CrashLoopBackOff."""
    bad_model = tmp_path / "no-such-model"
    loop_passes = WatchdogPings()
    sup = start_supervisor(
        tmp_path,
        workers=1,
        spec_yaml=SPEC,
        model_dir=bad_model,
        wait_ready=False,
        env=loop_passes.env(),
    )
    try:
        status = sup.wait_until(
            lambda s: bool(s["workers"]) and s["workers"][0]["state"] == "failed",
            timeout=90,
            what="the worker to be given up",
        )
        worker = status["workers"][0]
        assert worker["boot_failures"] == 3
        assert "no-such-model" in (worker["boot_message"] or "")
        assert status["supervisor"]["crash_loop"] == {"r0": True}
        # Given up means given up: no back-off is pending, and the supervisor's loop (each
        # pass pings the systemd watchdog, and each pass reconciles) passes over the failed
        # slot several times without starting it. Bound to the loop's own passes, not a sleep.
        assert worker["restart_in_s"] is None
        loop_passes.wait_for_more(5, timeout=30)
        starts = sup.events("worker_started")
        assert len(starts) == 3
        gaps = [b["ts"] - a["ts"] for a, b in itertools.pairwise(starts)]
        assert all(gap >= 0.45 for gap in gaps), gaps  # each retry waited its back-off
        scheduled = sup.events("restart_scheduled")
        assert [e["details"]["backoff_s"] > 0 for e in scheduled] == [True, True]
        assert [e["kind"] for e in sup.events("worker_gave_up")] == ["worker_gave_up"]
        assert sup.events("crash_loop_entered")
        health = sup.cli("check-health")
        assert health.returncode == 1
        assert "0/1 workers ready" in health.stdout
        assert "boot failed" in health.stdout
        table = sup.cli("status")
        assert table.returncode == 0, table.stderr
        assert "failed" in table.stdout
        assert "CrashLoopBackOff" in table.stdout
    finally:
        sup.stop()
        loop_passes.close()
