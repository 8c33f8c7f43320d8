"""The zygote protocol (``worker.zygote``) and the notify pipe (``worker.notify``), with real
processes: a real ``serve_as_zygote`` loop in a child Python forks a "worker" per request
and stands down when the channel closes; ``request_worker``'s answers when the zygote
does not; ``ReparentedProcess``'s exit codes; what a worker writes on its notify pipe.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from falcon_platform.worker.notify import Notifier
from falcon_platform.worker.zygote import (
    ReparentedProcess,
    request_worker,
    standby_fd_from_env,
)

# A zygote whose "worker" reports what it was given on its notify pipe and exits.
ZYGOTE = """
import json, os, sys
from falcon_platform.worker.zygote import serve_as_zygote
assignment = serve_as_zygote(int(sys.argv[1]))
if assignment is None:
    sys.exit(0)  # stood down
report = {"env": assignment.env, "admin_socket": str(assignment.admin_socket),
          "pid": os.getpid(), "sid": os.getsid(0)}
os.write(assignment.notify_fd, json.dumps(report).encode())
os._exit(0)
"""


@pytest.fixture
def zygote() -> Iterator[tuple[socket.socket, subprocess.Popen[bytes]]]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    proc = subprocess.Popen(
        [sys.executable, "-c", ZYGOTE, str(theirs.fileno())], pass_fds=(theirs.fileno(),)
    )
    theirs.close()
    yield ours, proc
    ours.close()
    try:
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def _read_all(fd: int, timeout: float = 20.0) -> bytes:
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        assert time.monotonic() < deadline, "the pipe never closed"
        chunk = os.read(fd, 65536)
        if not chunk:
            return data
        data += chunk


def test_a_zygote_forks_one_worker_per_request_and_stands_down_when_the_channel_closes(
    zygote: tuple[socket.socket, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    channel, proc = zygote
    reports = []
    for worker_id in ("w1", "w2"):
        read_fd, write_fd = os.pipe()
        try:
            pid = request_worker(
                channel,
                {"FALCON_WORKER_ID": worker_id, "FALCON_RELEASE": "r1"},
                tmp_path / f"{worker_id}.sock",
                write_fd,
                timeout_s=20,
            )
        finally:
            os.close(write_fd)
        try:
            report = json.loads(_read_all(read_fd))  # EOF once the worker exits: no copy leaked
        finally:
            os.close(read_fd)
        assert pid == report["pid"]
        assert report["sid"] == report["pid"]  # its own session: the zygote's signals miss it
        assert report["env"] == {"FALCON_WORKER_ID": worker_id, "FALCON_RELEASE": "r1"}
        assert report["admin_socket"] == str(tmp_path / f"{worker_id}.sock")
        reports.append(report)
    assert reports[0]["pid"] != reports[1]["pid"]
    assert proc.poll() is None  # the zygote stays for the next request
    channel.close()
    assert proc.wait(timeout=20) == 0  # stood down


def test_a_zygote_that_does_not_answer_gives_no_pid(tmp_path: Path) -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    read_fd, write_fd = os.pipe()
    try:
        started = time.monotonic()
        assert request_worker(ours, {}, tmp_path / "a.sock", write_fd, timeout_s=0.2) is None
        assert time.monotonic() - started < 5  # the timeout holds: the loop is not stalled
        theirs.send(b"not json")
        assert request_worker(ours, {}, tmp_path / "a.sock", write_fd, timeout_s=1) is None
        theirs.send(json.dumps({"error": "fork failed"}).encode())
        assert request_worker(ours, {}, tmp_path / "a.sock", write_fd, timeout_s=1) is None
        theirs.send(json.dumps({"pid": "12"}).encode())  # not an int
        assert request_worker(ours, {}, tmp_path / "a.sock", write_fd, timeout_s=1) is None
        theirs.close()  # gone
        assert request_worker(ours, {}, tmp_path / "a.sock", write_fd, timeout_s=1) is None
    finally:
        ours.close()
        os.close(read_fd)
        os.close(write_fd)


@pytest.mark.parametrize(
    ("raw", "expected"), [("7", 7), ("", None), ("x", None), ("-1", None), (None, None)]
)
def test_standby_fd_from_env_is_read_once(
    raw: str | None, expected: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Taken out of the environment, so the worker a zygote forks does not inherit it."""
    if raw is None:
        monkeypatch.delenv("FALCON_STANDBY_FD", raising=False)
    else:
        monkeypatch.setenv("FALCON_STANDBY_FD", raw)
    assert standby_fd_from_env() == expected
    assert "FALCON_STANDBY_FD" not in os.environ


# --- ReparentedProcess ------------------------------------------------------------------------


def _spawn(*argv: str) -> int:
    return os.posix_spawnp(argv[0], list(argv), dict(os.environ))


@pytest.mark.parametrize(
    ("script", "expected"), [("exit 0", 0), ("exit 7", 7), ("kill -9 $$", -signal.SIGKILL)]
)
def test_exit_codes_like_popen(script: str, expected: int) -> None:
    proc = ReparentedProcess(_spawn("sh", "-c", script))
    assert proc.wait(timeout=10) == expected
    assert proc.poll() == expected  # remembered, not waited for twice


def test_a_process_not_yet_ours_but_alive_is_running() -> None:
    """Between the zygote's fork and the re-parenting, the worker is alive but not our
    child: poll says running, not gone."""
    assert ReparentedProcess(1).poll() is None  # init: alive, never our child


def test_a_process_gone_without_us_seeing_its_status_is_255() -> None:
    pid = _spawn("true")
    os.waitpid(pid, 0)  # reaped elsewhere: its status is lost to us
    proc = ReparentedProcess(pid)
    assert proc.poll() == 255
    with pytest.raises(subprocess.TimeoutExpired):
        ReparentedProcess(1).wait(timeout=0.1)


# --- the notify pipe --------------------------------------------------------------------------


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_fd, write_fd = os.pipe()
    yield read_fd, write_fd
    os.close(read_fd)
    os.close(write_fd)


def test_one_line_per_message() -> None:
    read_fd, write_fd = os.pipe()
    notifier = Notifier(write_fd)
    notifier.send("ready")
    notifier.send("boot_failed ValueError: a\nb\nc")  # a message never spans lines
    notifier.send("x" * 5000)  # capped so one read gets it whole
    notifier.close()  # closes write_fd
    try:
        lines = _read_all(read_fd).split(b"\n")
    finally:
        os.close(read_fd)
    assert lines[:2] == [b"ready", b"boot_failed ValueError: a b c"]
    assert lines[2] == b"x" * 3000
    assert lines[3:] == [b""]


def test_a_supervisor_gone_does_not_stop_the_worker() -> None:
    read_fd, write_fd = os.pipe()
    os.close(read_fd)  # nobody reads any more
    notifier = Notifier(write_fd)
    notifier.send("ready")  # EPIPE is swallowed: serving goes on
    notifier.close()
    notifier.close()  # twice is fine


@pytest.mark.parametrize("raw", [None, "", "x", "3x"])
def test_no_pipe_no_messages(raw: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    if raw is None:
        monkeypatch.delenv("FALCON_NOTIFY_FD", raising=False)
    else:
        monkeypatch.setenv("FALCON_NOTIFY_FD", raw)
    notifier = Notifier.from_env()
    notifier.send("ready")  # a lone worker: nothing to tell, nothing written anywhere
    assert notifier._fd is None


def test_the_pipe_is_found_in_the_environment(
    pipe: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    read_fd, write_fd = pipe
    monkeypatch.setenv("FALCON_NOTIFY_FD", str(write_fd))
    Notifier.from_env().send("standby")
    assert os.read(read_fd, 100) == b"standby\n"
