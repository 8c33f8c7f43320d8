"""One worker process: the public app on an inherited socket, the admin app on a UNIX socket.

Both uvicorn servers share one (uvloop) event loop. The public server runs the app's
lifespan (model load, warm-up) *before* it starts accepting on the shared socket, so the
kernel only hands connections to a worker that is ready. SIGTERM drains: stop accepting
at once, readiness 503, finish in-flight requests within the grace, ship the request log
(lifespan shutdown), exit 0. This is also what each Kubernetes pod runs::

    falcon worker --fd 3 --admin-socket .falcon/run/w1.sock     # under the supervisor
    falcon worker --host 0.0.0.0 --port 8000                      # alone (a pod)

When started by the supervisor, ``FALCON_NOTIFY_FD`` names a pipe on which the worker
writes ``ready`` once it accepts, or ``boot_failed <why>`` before exiting (like sd_notify).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from falcon_platform.config.settings import Settings
from falcon_platform.runtime.standby import (
    preload_model,
    serve_as_zygote,
    standby_fd_from_env,
)

log = logging.getLogger("falcon.worker")

NOTIFY_FD_ENV = "FALCON_NOTIFY_FD"
SUPERVISOR_PID_ENV = "FALCON_SUPERVISOR_PID"
DRAIN_SETTLE_S = 0.5  # after the listener closes, before idle connections are closed
BOOT_FAILURE_EXIT = 78  # EX_CONFIG: the supervisor treats it as "do not retry in a tight loop"


@dataclass(frozen=True, slots=True)
class WorkerApps:
    """What a worker serves: the public ASGI app, its admin app, and how to mark it draining."""

    public: Any
    admin: Any
    begin_drain: Callable[[], None]


def build_serving_apps(settings: Settings, *, allow_faults: bool, model: Any = None) -> WorkerApps:
    """The real apps from ``falcon_platform.serving`` (imported here: heavy).

    ``model`` is a model a standby already loaded (None: the app's lifespan loads it)."""
    from falcon_platform.chaos import faults as chaos_faults
    from falcon_platform.serving.app import create_admin_app, create_app

    injector = chaos_faults.build_injector(settings, allow_faults=allow_faults)
    app = create_app(settings, faults=injector, model=model)
    return WorkerApps(
        public=app, admin=create_admin_app(app), begin_drain=app.state.falcon.begin_drain
    )


class _Notifier:
    """Writes one-line messages to the supervisor's pipe, if there is one."""

    def __init__(self, fd: int | None) -> None:
        self._fd = fd

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def send(self, message: str) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):  # the supervisor may be gone; serving goes on
            os.write(self._fd, (message.replace("\n", " ")[:3000] + "\n").encode())

    @classmethod
    def from_env(cls) -> _Notifier:
        raw = os.environ.get(NOTIFY_FD_ENV)
        return cls(int(raw) if raw and raw.isdigit() else None)


class _StartupFailureCapture:
    """ASGI wrapper that remembers why the lifespan startup failed, to tell the supervisor."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.failure: str | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "lifespan":
            await self.app(scope, receive, send)
            return

        async def capturing_send(message: Any) -> None:
            if message.get("type") == "lifespan.startup.failed":
                text = str(message.get("message") or "").strip().splitlines()
                self.failure = text[-1] if text else "application startup failed"
            await send(message)

        await self.app(scope, receive, capturing_send)


class _QuietServer(uvicorn.Server):
    """A uvicorn server whose signals are handled by the worker, not by uvicorn,
    and which says when it accepts (``started_event``)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.started_event = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self.started_event.set()

    async def wait_started(self, task: asyncio.Task[Any]) -> bool:
        """Wait until the server accepts or its task ends; True when it accepts."""
        waiter = asyncio.create_task(self.started_event.wait())
        await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        return self.started

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


def public_socket(fd: int | None, host: str, port: int) -> socket.socket:
    """The inherited listening socket (``--fd``), or a fresh one bound to host:port."""
    if fd is not None:
        sock = socket.socket(fileno=fd)
    else:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    sock.setblocking(False)
    return sock


async def _serve_catching_exit(server: uvicorn.Server, sockets: list[socket.socket]) -> int | None:
    """Run a uvicorn server; its ``sys.exit`` (startup failure) becomes a return value, because
    a SystemExit escaping a task would tear the loop down before the supervisor is told why."""
    try:
        await server.serve(sockets=sockets)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return None


async def serve(
    apps: WorkerApps,
    sock: socket.socket,
    admin_socket: Path | None,
    *,
    grace_s: float,
    notifier: _Notifier,
    tls_files: tuple[Path, Path] | None = None,
) -> int:
    """Run both servers until SIGTERM/SIGINT, then drain; returns the exit code."""
    common: dict[str, Any] = {
        "http": "httptools",
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": math.ceil(grace_s),
        "server_header": False,
    }
    admin_server: _QuietServer | None = None
    admin_task: asyncio.Task[None] | None = None
    if admin_socket is not None:
        admin_server = _QuietServer(
            uvicorn.Config(apps.admin, uds=str(admin_socket), lifespan="off", **common)
        )
        admin_task = asyncio.create_task(admin_server.serve())
    public_app = _StartupFailureCapture(apps.public)
    tls: dict[str, Any] = {}
    if tls_files is not None:
        tls = {"ssl_certfile": str(tls_files[0]), "ssl_keyfile": str(tls_files[1])}
    public_server = _QuietServer(uvicorn.Config(public_app, lifespan="on", **common, **tls))

    loop = asyncio.get_running_loop()

    draining: list[asyncio.Task[None]] = []

    async def drain() -> None:
        # Stop accepting at once; then let connections accepted a moment ago deliver their
        # request before uvicorn's shutdown closes every connection that has none in flight
        # (otherwise a client whose request was still on the wire gets a reset).
        for server in getattr(public_server, "servers", []):
            server.close()
        await asyncio.sleep(DRAIN_SETTLE_S)
        public_server.should_exit = True

    def on_term() -> None:
        apps.begin_drain()  # readiness 503 at once
        if draining or not public_server.started:
            public_server.should_exit = True  # a second signal, or still booting: go now
            return
        draining.append(asyncio.create_task(drain()))

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_term)

    public_task = asyncio.create_task(_serve_catching_exit(public_server, [sock]))
    if await public_server.wait_started(public_task):
        notifier.send("ready")
    exit_code = await public_task
    code = 0
    if exit_code is not None:  # uvicorn exits 3 when the lifespan startup failed
        code = BOOT_FAILURE_EXIT if not public_server.started else exit_code
        why = public_app.failure or "application startup failed (see the worker's log)"
        notifier.send(f"boot_failed {why}")
        print(f"falcon worker: boot failed: {why}", file=sys.stderr)
    if admin_server is not None and admin_task is not None:
        admin_server.should_exit = True
        with contextlib.suppress(Exception):
            await admin_task
    return code


def _die_with_supervisor(wait_for_reparent_s: float = 0.0) -> None:
    """Under a supervisor: get SIGTERM (drain) if it dies, so no worker is orphaned.

    A zygote-forked worker is re-parented to the supervisor a moment after it starts;
    ``wait_for_reparent_s`` waits for that before arming the signal.
    """
    raw = os.environ.get(SUPERVISOR_PID_ENV, "")
    if not raw.isdigit() or not sys.platform.startswith("linux"):
        return
    import ctypes
    import time

    deadline = time.monotonic() + wait_for_reparent_s
    while os.getppid() != int(raw) and time.monotonic() < deadline:
        time.sleep(0.002)
    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != int(raw):  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def worker_main(
    *,
    fd: int | None,
    host: str | None,
    port: int | None,
    admin_socket: Path | None,
    override_reason: str | None,
    allow_faults: bool,
    profile: str | None = None,
    env_file: Path | None = None,
) -> int:
    """``falcon worker``: settings, spec, the gate, then :func:`run_worker`.

    Any failure before the server accepts is a *boot failure*: said once on stderr and to
    the supervisor, exit 78, so the supervisor backs off instead of retrying in a tight loop.
    """
    notifier = _Notifier.from_env()
    _die_with_supervisor()
    model = None
    standby_fd = standby_fd_from_env()
    if standby_fd is not None:
        model = preload_model(profile, env_file)
        notifier.send("standby")
        assignment = serve_as_zygote(standby_fd)
        if assignment is None:
            return 0  # the supervisor stood this zygote down
        # From here on: a freshly forked worker with its own identity and notify pipe.
        notifier.close()
        os.environ.update(assignment.env)
        if assignment.notify_fd is not None:
            os.environ[NOTIFY_FD_ENV] = str(assignment.notify_fd)
        notifier = _Notifier.from_env()
        admin_socket = assignment.admin_socket
        _die_with_supervisor(wait_for_reparent_s=2.0)
    try:
        from falcon_platform.config.gate import enforce_gate
        from falcon_platform.config.settings import load_settings
        from falcon_platform.config.specfile import load_spec
        from falcon_platform.observability.logging import configure_logging

        overrides: dict[str, Any] = {}
        if host is not None:
            overrides["host"] = host
        if port is not None:
            overrides["port"] = port
        settings = load_settings(profile=profile, env_file=env_file, **overrides)
        configure_logging(settings.log_level, settings.log_format)
        spec = load_spec(settings.spec_path)
        # Under a supervisor its gate judged workers x limit for the machine; a lone worker
        # (one per Kubernetes pod) is one worker in its own memory budget.
        lone = os.environ.get(SUPERVISOR_PID_ENV) is None
        outcome = enforce_gate(
            settings,
            spec,
            override_reason=override_reason,
            allow_faults=allow_faults,
            workers=1 if lone else None,
        )
        if outcome.overridden:
            log.error(outcome.summary())
    except Exception as exc:
        notifier.send(f"boot_failed {type(exc).__name__}: {_first_line(exc)}")
        print(f"falcon worker: boot failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return BOOT_FAILURE_EXIT
    return run_worker(
        settings, fd=fd, admin_socket=admin_socket, allow_faults=allow_faults, model=model
    )


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "detail", None) or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def run_worker(
    settings: Settings,
    *,
    fd: int | None,
    admin_socket: Path | None,
    allow_faults: bool,
    build_apps: Callable[..., WorkerApps] = build_serving_apps,
    model: Any = None,
) -> int:
    """Entry point of ``falcon worker``; returns the process exit code."""
    notifier = _Notifier.from_env()
    try:
        apps = build_apps(settings, allow_faults=allow_faults, model=model)
        sock = public_socket(fd, settings.host, settings.port)
    except Exception as exc:
        # Say why once, loudly; the supervisor reads it and does not retry in a tight loop.
        notifier.send(f"boot_failed {type(exc).__name__}: {_first_line(exc)}")
        print(f"falcon worker: boot failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return BOOT_FAILURE_EXIT
    import uvloop

    if admin_socket is not None:
        admin_socket.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            admin_socket.unlink()
    tls = None
    if settings.tls_certfile is not None and settings.tls_keyfile is not None:
        tls = (settings.tls_certfile, settings.tls_keyfile)

    return uvloop.run(
        serve(
            apps,
            sock,
            admin_socket,
            grace_s=settings.shutdown_grace_s,
            notifier=notifier,
            tls_files=tls,
        )
    )
