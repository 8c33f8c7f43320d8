"""The worker's servers: the public app on the listening socket, the admin app on a UNIX socket.

Both uvicorn servers share one (uvloop) event loop. The public server runs the app's
lifespan (model load, warm-up) *before* it starts accepting on the shared socket, so the
kernel only hands connections to a worker that is ready. SIGTERM drains: stop accepting
at once, readiness 503, finish in-flight requests within the grace, ship the request log
(lifespan shutdown), exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from falcon_platform.files import bind_private_unix_socket
from falcon_platform.worker.connections import ConnectionGuard, ConnectionLimits, ConnectionStats
from falcon_platform.worker.notify import BOOT_FAILURE_EXIT, Notifier

DRAIN_SETTLE_S = 0.5  # after the listener closes, before idle connections are closed
DRAIN_IDLE_WINDOW_S = 2.0  # how long a draining worker waits for kept-alive clients' next request


@dataclass(frozen=True, slots=True)
class WorkerApps:
    """What a worker serves: the public ASGI app, its admin app, and how to mark it draining."""

    public: Any
    admin: Any
    begin_drain: Callable[[], None]
    # Given the public port's connection numbers once the server exists (for /metrics).
    watch_connections: Callable[[ConnectionStats], None] | None = None


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


class QuietServer(uvicorn.Server):
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
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(2048)
        except OSError:
            sock.close()  # a port already taken: closed now, not left to the GC
            raise
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


def exit_code_after_serving(uvicorn_exit: int | None, *, started: bool) -> int:
    """The worker's exit code: 0 after a drain; 78 (boot failure, backed off by the
    supervisor) when the server never accepted; uvicorn's own code if it failed later."""
    if uvicorn_exit is None:
        return 0
    return BOOT_FAILURE_EXIT if not started else uvicorn_exit


async def serve(
    apps: WorkerApps,
    sock: socket.socket,
    admin_socket: Path | None,
    *,
    grace_s: float,
    notifier: Notifier,
    tls_files: tuple[Path, Path] | None = None,
    limits: ConnectionLimits | None = None,
) -> int:
    """Run both servers until SIGTERM/SIGINT, then drain; returns the exit code."""
    common: dict[str, Any] = {
        "http": "httptools",
        "ws": "none",
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": math.ceil(grace_s),
        "server_header": False,
    }
    admin_server: QuietServer | None = None
    admin_task: asyncio.Task[None] | None = None
    if admin_socket is not None:
        admin_server = QuietServer(uvicorn.Config(apps.admin, lifespan="off", **common))
        # Bound by us, mode 0600: uvicorn's uds= would make it 0666 (any local user could
        # read the metrics or answer nothing to the supervisor's probes).
        admin_sock = bind_private_unix_socket(admin_socket)
        admin_task = asyncio.create_task(admin_server.serve(sockets=[admin_sock]))
    public_app = _StartupFailureCapture(apps.public)
    tls: dict[str, Any] = {}
    if tls_files is not None:
        tls = {"ssl_certfile": str(tls_files[0]), "ssl_keyfile": str(tls_files[1])}
    guard = ConnectionGuard(limits or ConnectionLimits())
    if apps.watch_connections is not None:
        apps.watch_connections(guard.stats)
    public = {
        **common,
        "http": guard.protocol_class(),
        "timeout_keep_alive": guard.limits.keepalive_timeout_s,
    }
    public_server = QuietServer(uvicorn.Config(public_app, lifespan="on", **public, **tls))

    loop = asyncio.get_running_loop()

    draining: list[asyncio.Task[None]] = []

    async def drain() -> None:
        # Stop accepting at once; then let connections accepted a moment ago deliver their
        # request before uvicorn's shutdown closes every connection that has none in flight
        # (otherwise a client whose request was still on the wire gets a reset).
        for server in getattr(public_server, "servers", []):
            server.close()
        # Busy kept-alive connections get `Connection: close` on their next answer; only those
        # idle for the whole window are then closed by the server.
        await guard.drain(
            window_s=min(DRAIN_IDLE_WINDOW_S, guard.limits.keepalive_timeout_s),
            settle_s=DRAIN_SETTLE_S,
        )
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
    code = exit_code_after_serving(exit_code, started=public_server.started)
    if exit_code is not None:  # uvicorn exits 3 when the lifespan startup failed
        why = public_app.failure or "application startup failed (see the worker's log)"
        notifier.send(f"boot_failed {why}")
        print(f"falcon worker: boot failed: {why}", file=sys.stderr)
    if admin_server is not None and admin_task is not None:
        admin_server.should_exit = True
        with contextlib.suppress(Exception):
            await admin_task
    return code
