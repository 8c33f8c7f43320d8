"""Zygote workers: imports done and model loaded once, then a fork per worker.

A fresh Python worker spends seconds importing FastAPI, NumPy, scikit-learn and loading
the model; under load on a small machine that is most of its restart time. So the
supervisor keeps one *zygote* per release (Android's zygote, gunicorn's ``--preload``): a
``falcon worker`` that preloads, then waits on a socket. For each slot the supervisor
sends an assignment (worker id, admin socket, a notify pipe); the zygote double-forks a
worker that only builds the app, starts the stores and warms up (a few hundred ms), and
the model pages stay shared copy-on-write. The supervisor is a child subreaper, so the
forked worker becomes its child and is reaped, signalled and cgrouped like any other::

    # zygote side (falcon worker, started with FALCON_STANDBY_FD = its end of a socketpair):
    model = preload_model(profile, env_file)
    assignment = serve_as_zygote(fd)        # returns only in a forked worker (None: stand down)
    # supervisor side:
    pid = request_worker(channel, {"FALCON_WORKER_ID": "w3"}, admin_socket, notify_w, timeout_s=10)
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STANDBY_FD_ENV = "FALCON_STANDBY_FD"

#: What a worker imports on its way to ready (measured: ~0.3 s of a warm boot was lazy
#: imports of the stores stack); importing them in the standby moves that cost off the restart.
PRELOAD_MODULES = (
    "falcon_platform.serving.app",
    "falcon_platform.serving.admin",
    "falcon_platform.stores.factory",
    "falcon_platform.stores.database",
    "falcon_platform.stores.request_log",
    "falcon_platform.config.gate",
    "falcon_platform.config.specfile",
    "falcon_platform.chaos.faults",
    "falcon_platform.observability.logging",
    # not Alembic or SQLAlchemy: the supervisor migrates before any worker starts, and a
    # worker's embedded stores use sqlite3 (stores.sqlite_db)
    "uvicorn",
    "uvloop",
)


@dataclass(frozen=True, slots=True)
class Assignment:
    env: dict[str, str]
    admin_socket: Path
    notify_fd: int | None = None  # the worker's own notify pipe (zygote mode)


def standby_fd_from_env() -> int | None:
    raw = os.environ.pop(STANDBY_FD_ENV, "")
    return int(raw) if raw.isdigit() else None


def preload_model(profile: str | None, env_file: Path | None) -> Any | None:
    """Import the serving stack and load this release's model; None if anything fails
    (the real boot will then fail the ordinary way and say why)."""
    try:
        for module in PRELOAD_MODULES:
            importlib.import_module(module)
        from falcon_platform.config.settings import load_settings
        from falcon_platform.model.registry import load_model

        settings = load_settings(profile=profile, env_file=env_file)
        model = load_model(settings.resolved_model_path)
        model.predict_proba(["warm up", "the vectorizer"])  # first call pays lazy init here
    except Exception:
        return None
    return model


def serve_as_zygote(channel_fd: int) -> Assignment | None:
    """The zygote loop: for each assignment fork a worker and report its pid; return the
    assignment *in the forked worker* (which then boots), or None in the zygote when the
    supervisor closes the channel (stand down).

    Double fork: the intermediate exits at once, so the worker is re-parented to the
    supervisor (a child subreaper), which reaps it like any other worker.
    """
    channel = socket.socket(fileno=channel_fd)
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(channel, 65536, 1)
        except OSError:
            return None
        if not data or not fds:
            return None
        body = json.loads(data)
        env = {str(k): str(v) for k, v in body["env"].items()}
        assignment = Assignment(env, Path(body["admin_socket"]), notify_fd=fds[0])
        report_read, report_write = os.pipe()
        intermediate = os.fork()
        if intermediate == 0:  # pragma: no cover - runs in the forked process
            os.close(report_read)
            worker = os.fork()
            if worker == 0:
                os.close(report_write)
                channel.close()
                os.setsid()
                return assignment
            os.write(report_write, str(worker).encode())
            os._exit(0)
        os.close(report_write)
        os.close(fds[0])  # the worker has its copy
        with os.fdopen(report_read, "rb") as report:
            raw = report.read()
        os.waitpid(intermediate, 0)
        reply = {"pid": int(raw)} if raw.strip().isdigit() else {"error": "fork failed"}
        try:
            channel.sendall(json.dumps(reply).encode())
        except OSError:
            return None


def request_worker(
    channel: socket.socket,
    env: dict[str, str],
    admin_socket: Path,
    notify_fd: int,
    *,
    timeout_s: float,
) -> int | None:
    """Ask a zygote for a worker; its pid, or None if the zygote did not answer."""
    message = json.dumps({"env": env, "admin_socket": str(admin_socket)}).encode()
    try:
        channel.settimeout(timeout_s)
        socket.send_fds(channel, [message], [notify_fd])
        reply = json.loads(channel.recv(65536) or b"{}")
    except (OSError, ValueError):
        return None
    pid = reply.get("pid")
    return int(pid) if isinstance(pid, int) else None


class ReparentedProcess:
    """A worker forked by a zygote and re-parented to the supervisor: ``Popen``'s
    ``pid``/``poll()``/``returncode``/``wait()`` over ``os.waitpid``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is not None:
            return self.returncode
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            # Not our child (yet): still being re-parented, or gone without us seeing it.
            if Path(f"/proc/{self.pid}").exists():
                return None
            self.returncode = 255
            return self.returncode
        if pid == 0:
            return None
        self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        import subprocess
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0.0)
            time.sleep(0.05)
        assert self.returncode is not None
        return self.returncode

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, 9)


def become_subreaper() -> None:
    """Make orphaned descendants (zygote-forked workers) children of this process (Linux)."""
    import ctypes
    import sys

    if sys.platform.startswith("linux"):
        pr_set_child_subreaper = 36
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_child_subreaper, 1)
