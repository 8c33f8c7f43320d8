"""Starting worker processes: fresh ones, and warm standbys promoted into a slot.

Every worker inherits the public listening socket (``--fd``) and a notify pipe on which it
says ``ready`` or ``boot_failed <why>``. One standby per release waits with its imports done
and its model loaded (``runtime.standby``), so a restart costs building the app, not
starting Python::

    spawner = Spawner(sock, releases, worker_args=["--allow-faults"], clock=clock)
    started = spawner.spawn("r1", "w3", admin_socket)      # StartedWorker(proc, notify_fd, ...)
    spawner.maintain_standby("r1", allowed=True)           # from the supervisor loop
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from falcon_platform.clock import Clock
from falcon_platform.supervisor.slots import Release
from falcon_platform.worker.notify import NOTIFY_FD_ENV, SUPERVISOR_PID_ENV
from falcon_platform.worker.zygote import STANDBY_FD_ENV, ReparentedProcess, request_worker

log = logging.getLogger("falcon.supervisor")

STANDBY_RETRY_S = 30.0  # a zygote that died is not replaced in a tight loop either
ZYGOTE_TIMEOUT_S = 10.0
ZYGOTE_WAIT_S = 15.0  # a restart waits this long at most for a preloading zygote


def worker_command(
    executable: str,
    sock_fd: int,
    admin_socket: Path | None,
    worker_args: Sequence[str],
    gate_args: Sequence[str],
) -> list[str]:
    """The worker's command line: the thin entry point, the inherited socket, the admin
    socket (none for a zygote), the supervisor's options, then the release's own gate options."""
    command = [executable, "-m", "falcon_platform.worker", "--fd", str(sock_fd)]
    if admin_socket is not None:
        command += ["--admin-socket", str(admin_socket)]
    return command + list(worker_args) + list(gate_args)


def worker_env(
    base: Mapping[str, str],
    release_env: Mapping[str, str],
    *,
    release: str,
    worker_id: str,
    notify_fd: int,
    supervisor_pid: int,
) -> dict[str, str]:
    """The worker's environment: the supervisor's, the release's ``FALCON_*`` overrides on
    top, and last its identity and notify pipe, which no release setting can override."""
    env = dict(base)
    env.update(release_env)
    env.update(
        {
            "FALCON_WORKER_ID": worker_id,
            "FALCON_RELEASE": release,
            NOTIFY_FD_ENV: str(notify_fd),
            SUPERVISOR_PID_ENV: str(supervisor_pid),
        }
    )
    return env


def standby_due(
    *, enabled: bool, allowed: bool, has_standby: bool, now: float, not_before: float
) -> bool:
    """Start a zygote for the release now? Not if standbys are off, the caller says not now
    (a rollout, memory), it has one, or a recent failure's retry delay has not passed."""
    return enabled and allowed and not has_standby and now >= not_before


def zygote_worth_waiting_for(*, warm: bool, alive: bool, age_s: float) -> bool:
    """A zygote still preloading (and young) will fork a worker sooner than a fresh start,
    which would also compete with it for the CPU."""
    return not warm and alive and age_s < ZYGOTE_WAIT_S


@dataclass
class Standby:
    """A release's zygote: preloaded, forks a worker per request."""

    release: str
    proc: subprocess.Popen[bytes]
    notify_fd: int
    channel: socket.socket
    started_mono: float = 0.0
    warm: bool = False


@dataclass(frozen=True, slots=True)
class StartedWorker:
    proc: subprocess.Popen[bytes] | ReparentedProcess
    notify_fd: int  # read end; the supervisor owns it now
    from_standby: bool
    standby_warm: bool = False  # it had finished preloading when it got the slot


class Spawner:
    def __init__(
        self,
        sock_fd: int,
        releases: Mapping[str, Release],
        *,
        worker_args: Sequence[str],
        clock: Clock,
        use_standby: bool = True,
        on_warm: Callable[[], None] | None = None,
        executable: str | None = None,
    ) -> None:
        self._executable = executable or sys.executable
        self._sock_fd = sock_fd
        self._releases = releases
        self._worker_args = list(worker_args)
        self._clock = clock
        self.use_standby = use_standby
        self._on_warm = on_warm
        self.standbys: dict[str, Standby] = {}
        self._retired: list[subprocess.Popen[bytes]] = []
        self._not_before: dict[str, float] = {}

    # --- processes -------------------------------------------------------------------------
    def _command(self, release: str, admin_socket: Path | None) -> list[str]:
        return worker_command(
            self._executable,
            self._sock_fd,
            admin_socket,
            self._worker_args,
            self._releases[release].gate_args,
        )

    def _env(self, release: str, worker_id: str, notify_fd: int) -> dict[str, str]:
        return worker_env(
            os.environ,
            self._releases[release].env,
            release=release,
            worker_id=worker_id,
            notify_fd=notify_fd,
            supervisor_pid=os.getpid(),
        )

    def spawn(self, release: str, worker_id: str, admin_socket: Path) -> StartedWorker:
        """A worker for the slot: forked by the release's warm zygote, else started afresh."""
        with contextlib.suppress(FileNotFoundError):
            admin_socket.unlink()
        standby = self._usable(release)
        # Only a warm zygote answers at once; asking one still preloading would stall the loop.
        if standby is not None and standby.warm:
            read_fd, write_fd = os.pipe()
            env = {"FALCON_WORKER_ID": worker_id, "FALCON_RELEASE": release}
            try:
                pid = request_worker(
                    standby.channel, env, admin_socket, write_fd, timeout_s=ZYGOTE_TIMEOUT_S
                )
            finally:
                os.close(write_fd)
            if pid is not None:
                return StartedWorker(ReparentedProcess(pid), read_fd, True, standby.warm)
            os.close(read_fd)
            log.warning("the zygote of %s did not fork a worker; starting one afresh", release)
            self.standbys.pop(release, None)
            self._discard(standby)
            self._retired.append(standby.proc)
        read_fd, write_fd = os.pipe()
        try:
            proc = subprocess.Popen(
                self._command(release, admin_socket),
                pass_fds=(self._sock_fd, write_fd),
                env=self._env(release, worker_id, write_fd),
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches the supervisor only; it drains workers
            )
        except OSError:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        return StartedWorker(proc, read_fd, False)

    # --- standbys --------------------------------------------------------------------------
    def maintain_standby(self, release: str, *, allowed: bool) -> None:
        """Start the release's standby if it has none and the caller allows it now."""
        if not standby_due(
            enabled=self.use_standby,
            allowed=allowed,
            has_standby=release in self.standbys,
            now=self._clock.monotonic(),
            not_before=self._not_before.get(release, 0.0),
        ):
            return
        notify_read, notify_write = os.pipe()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = self._env(release, "zygote", notify_write)
        env[STANDBY_FD_ENV] = str(theirs.fileno())
        try:
            proc = subprocess.Popen(
                self._command(release, None),
                pass_fds=(self._sock_fd, notify_write, theirs.fileno()),
                env=env,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            os.close(notify_read)
            ours.close()
            log.warning("could not start a zygote worker: %s", exc)
            self._not_before[release] = self._clock.monotonic() + STANDBY_RETRY_S
            return
        finally:
            os.close(notify_write)
            theirs.close()
        standby = Standby(release, proc, notify_read, ours, self._clock.monotonic())
        self.standbys[release] = standby
        asyncio.get_running_loop().add_reader(notify_read, self._on_notify, standby)

    def _on_notify(self, standby: Standby) -> None:
        try:
            chunk = os.read(standby.notify_fd, 4096)
        except OSError:
            chunk = b""
        if b"standby" in chunk:
            standby.warm = True
            if self._on_warm is not None:
                self._on_warm()
        if not chunk:
            self._unwatch(standby)

    def _unwatch(self, standby: Standby) -> None:
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(standby.notify_fd)

    def zygote_pending(self, release: str) -> bool:
        """A zygote for the release is still preloading (and young): waiting for it is faster
        than starting a worker from scratch, which would compete with it for the CPU."""
        standby = self.standbys.get(release)
        return standby is not None and zygote_worth_waiting_for(
            warm=standby.warm,
            alive=standby.proc.poll() is None,
            age_s=self._clock.monotonic() - standby.started_mono,
        )

    def _usable(self, release: str) -> Standby | None:
        """The release's zygote if it is alive (it stays: it forks the next worker too)."""
        standby = self.standbys.get(release)
        if standby is None:
            return None
        if not standby.warm and select.select([standby.notify_fd], [], [], 0)[0]:
            self._on_notify(standby)  # its "standby" line may not have been read yet
        if standby.proc.poll() is not None:
            del self.standbys[release]
            self._discard(standby)
            return None
        return standby

    def _discard(self, standby: Standby) -> None:
        self._unwatch(standby)
        with contextlib.suppress(OSError):
            os.close(standby.notify_fd)
        standby.channel.close()  # the zygote sees the channel close and exits 0

    def stand_down(self, release: str | None = None) -> None:
        """Release the zygote of ``release``, or every zygote (before a rolling restart: the
        model may have changed)."""
        for name in [release] if release is not None else list(self.standbys):
            standby = self.standbys.pop(name, None)
            if standby is None:
                continue
            self._discard(standby)
            self._retired.append(standby.proc)

    def reap(self) -> None:
        for release, standby in list(self.standbys.items()):
            if standby.proc.poll() is not None:
                del self.standbys[release]
                self._discard(standby)
                log.warning("standby worker for %s exited (%s)", release, standby.proc.returncode)
                self._not_before[release] = self._clock.monotonic() + STANDBY_RETRY_S
        self._retired = [p for p in self._retired if p.poll() is None]

    async def close(self) -> None:
        self.stand_down()
        for proc in self._retired:
            try:
                await asyncio.to_thread(proc.wait, 5)
            except subprocess.TimeoutExpired:
                proc.kill()
        self._retired = []

    def status(self) -> dict[str, dict[str, object]]:
        return {r: {"pid": s.proc.pid, "warm": s.warm} for r, s in self.standbys.items()}
