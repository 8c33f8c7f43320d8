"""Starting workers (``supervisor.spawner``): the command line and environment a worker gets,
when a zygote (standby) is started, waited for or used, and what happens when starting a
process fails. Processes are real: a real worker that fails its boot, ``sleep`` as a
zygote's process, and an executable that does not exist for a failed start.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from falcon_platform.supervisor.slots import Release
from falcon_platform.supervisor.spawner import (
    STANDBY_RETRY_S,
    Spawner,
    Standby,
    standby_due,
    worker_command,
    worker_env,
    zygote_worth_waiting_for,
)
from falcon_platform.testing.clock import FakeClock
from falcon_platform.worker.zygote import ReparentedProcess

MISSING = "/nonexistent/falcon-python"


@pytest.mark.parametrize(
    ("admin", "worker_args", "gate_args", "expected"),
    [
        (Path("/run/w1.sock"), [], (),
         ["py", "-m", "falcon_platform.worker", "--fd", "7", "--admin-socket", "/run/w1.sock"]),
        # a zygote has no admin socket of its own
        (None, ["--allow-faults"], (),
         ["py", "-m", "falcon_platform.worker", "--fd", "7", "--allow-faults"]),
        # the release's own gate decision comes last
        (Path("/a.sock"), ["--allow-faults"], ("--override-gate", "incident 42"),
         ["py", "-m", "falcon_platform.worker", "--fd", "7", "--admin-socket", "/a.sock",
          "--allow-faults", "--override-gate", "incident 42"]),
    ],
)  # fmt: skip
def test_worker_command(
    admin: Path | None, worker_args: list[str], gate_args: tuple[str, ...], expected: list[str]
) -> None:
    assert worker_command("py", 7, admin, worker_args, gate_args) == expected


def test_worker_env_layers_release_settings_and_then_identity() -> None:
    base = {"PATH": "/bin", "FALCON_LOG_LEVEL": "INFO", "FALCON_RELEASE": "stale"}
    release_env = {"FALCON_LOG_LEVEL": "DEBUG", "FALCON_WORKER_ID": "spoofed"}
    env = worker_env(
        base, release_env, release="r2", worker_id="w3", notify_fd=9, supervisor_pid=111
    )
    assert env == {
        "PATH": "/bin",
        "FALCON_LOG_LEVEL": "DEBUG",  # the release overrides the supervisor's environment
        "FALCON_WORKER_ID": "w3",  # identity cannot be overridden by a release
        "FALCON_RELEASE": "r2",
        "FALCON_NOTIFY_FD": "9",
        "FALCON_SUPERVISOR_PID": "111",
    }
    assert base["FALCON_RELEASE"] == "stale"  # the supervisor's own environment is not touched


@pytest.mark.parametrize(
    ("enabled", "allowed", "has", "now", "not_before", "expected"),
    [
        (True, True, False, 100.0, 0.0, True),
        (False, True, False, 100.0, 0.0, False),  # standbys off (FALCON_STANDBY=false)
        (True, False, False, 100.0, 0.0, False),  # the supervisor says not now
        (True, True, True, 100.0, 0.0, False),  # it has one
        (True, True, False, 100.0, 130.0, False),  # failed recently: wait for the retry
        (True, True, False, 130.0, 130.0, True),  # the retry time itself
    ],
)
def test_standby_due(
    enabled: bool, allowed: bool, has: bool, now: float, not_before: float, expected: bool
) -> None:
    due = standby_due(
        enabled=enabled, allowed=allowed, has_standby=has, now=now, not_before=not_before
    )
    assert due is expected


@pytest.mark.parametrize(
    ("warm", "alive", "age", "expected"),
    [
        (False, True, 0.0, True),
        (False, True, 14.9, True),
        (False, True, 15.0, False),  # preloading too long: start afresh
        (True, True, 1.0, False),  # warm: nothing to wait for, use it
        (False, False, 1.0, False),  # dead
    ],
)
def test_zygote_worth_waiting_for(warm: bool, alive: bool, age: float, expected: bool) -> None:
    assert zygote_worth_waiting_for(warm=warm, alive=alive, age_s=age) is expected


# --- processes ---------------------------------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock
    sock.close()


def _fds() -> set[str]:
    """This process's open descriptors (less the one listdir used, closed by now)."""
    return {fd for fd in os.listdir("/proc/self/fd") if os.path.lexists(f"/proc/self/fd/{fd}")}


def _read_until_eof(fd: int, timeout: float = 60.0) -> bytes:
    deadline = time.monotonic() + timeout
    chunks = []
    os.set_blocking(fd, True)
    while True:
        assert time.monotonic() < deadline, "the notify pipe never closed"
        chunk = os.read(fd, 4096)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def test_a_fresh_worker_gets_the_socket_the_notify_pipe_and_its_releases_settings(
    tmp_path: Path, listener: socket.socket
) -> None:
    """A real worker whose release sets a bad value fails its boot and says so on the pipe:
    the pipe, the release's environment and the exit code all reach the supervisor."""
    releases = {"r1": Release("r1", env={"FALCON_HOME": str(tmp_path), "FALCON_WORKERS": "x"})}
    spawner = Spawner(listener.fileno(), releases, worker_args=[], clock=FakeClock())
    admin = tmp_path / "w1.sock"
    admin.write_text("stale")  # a socket file left by the slot's previous process
    before = _fds()
    started = spawner.spawn("r1", "w1", admin)
    try:
        assert not admin.exists()
        assert started.from_standby is False
        assert _fds() - before == {str(started.notify_fd)}  # the write end was closed here
        message = _read_until_eof(started.notify_fd)  # EOF: only the worker held the write end
        assert message.startswith(b"boot_failed ConfigError: FALCON_WORKERS='x'"), message
        assert started.proc.wait(timeout=60) == 78
    finally:
        os.close(started.notify_fd)
        if started.proc.poll() is None:
            started.proc.kill()


def test_a_failed_start_raises_and_leaks_no_descriptor(
    tmp_path: Path, listener: socket.socket
) -> None:
    spawner = Spawner(
        listener.fileno(), {"r1": Release("r1")}, worker_args=[], clock=FakeClock(),
        executable=MISSING,
    )  # fmt: skip
    before = _fds()
    with pytest.raises(OSError, match="falcon-python"):
        spawner.spawn("r1", "w1", tmp_path / "w1.sock")
    assert _fds() - before == set()  # nothing left open (others may close theirs meanwhile)


async def test_a_zygote_that_cannot_start_is_retried_after_the_delay_not_every_tick(
    tmp_path: Path, listener: socket.socket
) -> None:
    clock = FakeClock()
    python = tmp_path / "python"  # missing for now
    spawner = Spawner(
        listener.fileno(), {"r1": Release("r1")}, worker_args=[], clock=clock,
        executable=str(python),
    )  # fmt: skip
    before = _fds()
    spawner.maintain_standby("r1", allowed=True)
    assert spawner.standbys == {}
    assert _fds() - before == set()  # nothing left open (others may close theirs meanwhile)
    python.write_text("#!/bin/sh\nexit 0\n")  # the cause is fixed: a "zygote" that exits
    python.chmod(0o755)
    clock.advance(STANDBY_RETRY_S - 0.1)
    spawner.maintain_standby("r1", allowed=True)
    assert spawner.standbys == {}  # the retry delay still holds
    clock.advance(0.1)
    spawner.maintain_standby("r1", allowed=True)
    try:
        assert set(spawner.standbys) == {"r1"}
        spawner.standbys["r1"].proc.wait(timeout=10)
        # reap: the dead zygote goes, and is not replaced before the retry delay
        spawner.reap()
        assert spawner.standbys == {}
        spawner.maintain_standby("r1", allowed=True)
        assert spawner.standbys == {}
        assert not spawner.zygote_pending("r1")
    finally:
        await spawner.close()


class FakeZygote(threading.Thread):
    """The other end of a zygote's channel: answers one request with ``pid`` (or hangs up)."""

    def __init__(self, channel: socket.socket, pid: int | None) -> None:
        super().__init__(daemon=True)
        self.channel, self.pid = channel, pid
        self.request: dict[str, object] = {}
        self.fds: list[int] = []

    def run(self) -> None:
        message, fds, _, _ = socket.recv_fds(self.channel, 65536, 4)
        self.request, self.fds = json.loads(message), fds
        if self.pid is None:
            self.channel.close()
        else:
            self.channel.send(json.dumps({"pid": self.pid}).encode())


def _standby(
    release: str, proc: subprocess.Popen[bytes], *, warm: bool
) -> tuple[Standby, socket.socket]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    notify_read, notify_write = os.pipe()
    os.close(notify_write)
    return Standby(release, proc, notify_read, ours, started_mono=1000.0, warm=warm), theirs


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def test_a_warm_zygote_forks_the_worker(
    tmp_path: Path, listener: socket.socket, sleeper: subprocess.Popen[bytes]
) -> None:
    spawner = Spawner(listener.fileno(), {"r1": Release("r1")}, worker_args=[], clock=FakeClock())
    standby, theirs = _standby("r1", sleeper, warm=True)
    spawner.standbys["r1"] = standby
    zygote = FakeZygote(theirs, pid=sleeper.pid)  # "forked": the pid of a live process
    zygote.start()
    started = spawner.spawn("r1", "w4", tmp_path / "w4.sock")
    zygote.join(timeout=10)
    try:
        assert isinstance(started.proc, ReparentedProcess)
        assert started.proc.pid == sleeper.pid
        assert (started.from_standby, started.standby_warm) == (True, True)
        assert zygote.request == {
            "env": {"FALCON_WORKER_ID": "w4", "FALCON_RELEASE": "r1"},
            "admin_socket": str(tmp_path / "w4.sock"),
        }
        # the zygote got the write end of the worker's notify pipe, ours is the read end
        [write_end] = zygote.fds
        os.write(write_end, b"ready\n")
        os.close(write_end)
        assert os.read(started.notify_fd, 100) == b"ready\n"
        assert set(spawner.standbys) == {"r1"}  # it stays: it forks the next worker too
    finally:
        os.close(started.notify_fd)
        spawner.stand_down()
        theirs.close()


def test_a_zygote_that_does_not_fork_is_dropped_and_the_worker_starts_afresh(
    tmp_path: Path, listener: socket.socket, sleeper: subprocess.Popen[bytes]
) -> None:
    spawner = Spawner(
        listener.fileno(), {"r1": Release("r1")}, worker_args=[], clock=FakeClock(),
        executable="/bin/true",
    )  # fmt: skip
    standby, theirs = _standby("r1", sleeper, warm=True)
    spawner.standbys["r1"] = standby
    zygote = FakeZygote(theirs, pid=None)  # hangs up instead of answering
    zygote.start()
    started = spawner.spawn("r1", "w4", tmp_path / "w4.sock")
    zygote.join(timeout=10)
    try:
        assert started.from_standby is False
        assert isinstance(started.proc, subprocess.Popen)
        assert started.proc.args[0] == "/bin/true"  # type: ignore[index]
        assert spawner.standbys == {}
        assert spawner._retired == [sleeper]  # waited for on close, not orphaned
        for fd in zygote.fds:
            os.close(fd)
        started.proc.wait(timeout=10)
    finally:
        os.close(started.notify_fd)


def test_a_zygote_still_preloading_is_not_asked(
    tmp_path: Path, listener: socket.socket, sleeper: subprocess.Popen[bytes]
) -> None:
    """Asking a zygote that is still loading the model would stall the supervisor's loop: the
    worker is started afresh, and the zygote kept for the next one."""
    clock = FakeClock()
    spawner = Spawner(
        listener.fileno(), {"r1": Release("r1")}, worker_args=[], clock=clock,
        executable="/bin/true",
    )  # fmt: skip
    standby, theirs = _standby("r1", sleeper, warm=False)
    standby.started_mono = clock.monotonic()
    spawner.standbys["r1"] = standby
    assert spawner.zygote_pending("r1")
    clock.advance(15.0)
    assert not spawner.zygote_pending("r1")  # preloading too long
    started = spawner.spawn("r1", "w4", tmp_path / "w4.sock")
    try:
        assert started.from_standby is False
        assert set(spawner.standbys) == {"r1"}
        started.proc.wait(timeout=10)
    finally:
        os.close(started.notify_fd)
        spawner.stand_down()
        theirs.close()


def test_a_zygotes_unread_standby_line_is_read_before_deciding(
    tmp_path: Path, listener: socket.socket, sleeper: subprocess.Popen[bytes]
) -> None:
    """The zygote said ``standby`` but the loop has not read it yet: the spawn reads it,
    counts the zygote warm (telling the supervisor once) and uses it."""
    warmed: list[bool] = []
    spawner = Spawner(
        listener.fileno(), {"r1": Release("r1")}, worker_args=[], clock=FakeClock(),
        on_warm=lambda: warmed.append(True), executable=MISSING,
    )  # fmt: skip
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    notify_read, notify_write = os.pipe()
    os.write(notify_write, b"standby\n")
    spawner.standbys["r1"] = Standby("r1", sleeper, notify_read, ours, started_mono=1000.0)
    zygote = FakeZygote(theirs, pid=sleeper.pid)
    zygote.start()
    try:
        started = spawner.spawn("r1", "w2", tmp_path / "w2.sock")  # MISSING: no fresh start
        zygote.join(timeout=10)
        assert (started.from_standby, started.standby_warm) == (True, True)
        assert warmed == [True]
        assert spawner.status() == {"r1": {"pid": sleeper.pid, "warm": True}}
        os.close(started.notify_fd)
        for fd in zygote.fds:
            os.close(fd)
    finally:
        os.close(notify_write)
        spawner.stand_down()
        theirs.close()
