"""The worker's servers (``worker.server``): the exit code after serving, why a lifespan
startup failed, the listening socket, and ``serve`` itself in-process with real uvicorn on
loopback: a failed startup is a boot failure (78, said once on the notify pipe); a ready
server says ``ready``, answers, and drains on a real SIGTERM to exit 0.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from falcon_platform.worker.notify import Notifier
from falcon_platform.worker.server import (
    WorkerApps,
    _serve_catching_exit,
    _StartupFailureCapture,
    exit_code_after_serving,
    public_socket,
    serve,
)


@pytest.mark.parametrize(
    ("uvicorn_exit", "started", "expected"),
    [
        (None, True, 0),  # drained and stopped
        (None, False, 0),  # stopped before it started (SIGTERM while booting)
        (3, False, 78),  # lifespan startup failed: a boot failure, backed off
        (1, False, 78),
        (1, True, 1),  # failed after it accepted: uvicorn's own code
    ],
)
def test_exit_code_after_serving(uvicorn_exit: int | None, started: bool, expected: int) -> None:
    assert exit_code_after_serving(uvicorn_exit, started=started) == expected


# --- why the startup failed -------------------------------------------------------------------


def _lifespan_app(failure: str | None) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        await receive()
        if failure is None:
            await send({"type": "lifespan.startup.complete"})
        else:
            await send({"type": "lifespan.startup.failed", "message": failure})

    return app


async def _start(app: Any) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "lifespan"}, receive, send)
    return sent


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "Traceback ...\n  File x\nModelLoadError: no model at /m",
            "ModelLoadError: no model at /m",
        ),
        ("one line", "one line"),
        ("", "application startup failed"),
        ("  \n ", "application startup failed"),
    ],
)
async def test_the_last_line_of_a_startup_failure_is_kept(message: str, expected: str) -> None:
    capture = _StartupFailureCapture(_lifespan_app(message))
    sent = await _start(capture)
    assert sent == [{"type": "lifespan.startup.failed", "message": message}]  # passed on as is
    assert capture.failure == expected


async def test_a_successful_startup_records_no_failure() -> None:
    capture = _StartupFailureCapture(_lifespan_app(None))
    assert await _start(capture) == [{"type": "lifespan.startup.complete"}]
    assert capture.failure is None


async def test_http_requests_pass_through_untouched() -> None:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope, receive, send))

    capture = _StartupFailureCapture(app)
    scope, receive, send = {"type": "http"}, object(), object()
    await capture(scope, receive, send)
    assert seen == [(scope, receive, send)]


# --- uvicorn's sys.exit ------------------------------------------------------------------------


class _Exiting(uvicorn.Server):
    def __init__(self, code: object) -> None:
        super().__init__(uvicorn.Config(app=None))
        self.code = code

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        if self.code != "return":
            raise SystemExit(self.code)


@pytest.mark.parametrize(
    ("code", "expected"), [(3, 3), (0, 0), (None, 1), ("message", 1), ("return", None)]
)
async def test_uvicorns_exit_becomes_a_return_value(code: object, expected: int | None) -> None:
    assert await _serve_catching_exit(_Exiting(code), []) == expected


# --- the listening socket ---------------------------------------------------------------------


def test_a_fresh_socket_is_bound_listening_and_non_blocking() -> None:
    sock = public_socket(None, "127.0.0.1", 0)
    try:
        assert sock.family == socket.AF_INET
        assert sock.getblocking() is False
        with socket.create_connection(sock.getsockname(), timeout=5):
            pass  # the kernel accepts into the backlog: it listens
    finally:
        sock.close()


def test_an_ipv6_host_gets_an_ipv6_socket() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python build")
    try:
        sock = public_socket(None, "::1", 0)
    except OSError as exc:  # no ::1 configured in this network namespace
        pytest.skip(f"no IPv6 loopback here: {exc}")
    try:
        assert sock.family == socket.AF_INET6
    finally:
        sock.close()


def test_an_inherited_socket_is_used_as_is() -> None:
    parent = socket.socket()
    parent.bind(("127.0.0.1", 0))
    parent.listen(8)
    address = parent.getsockname()
    sock = public_socket(parent.detach(), "ignored", 1)
    try:
        assert sock.getsockname() == address
        assert sock.getblocking() is False
    finally:
        sock.close()


# --- serve, in-process ------------------------------------------------------------------------


@pytest.fixture
def pipe() -> Iterator[tuple[int, Notifier]]:
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    yield read_fd, Notifier(write_fd)
    os.close(read_fd)
    os.close(write_fd)


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except BlockingIOError:
        return b""


@pytest.fixture
async def restore_signals() -> AsyncIterator[None]:
    """serve() installs SIGTERM/SIGINT handlers on the loop; put the defaults back."""
    yield
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)


async def test_a_failed_startup_is_a_boot_failure_said_once(
    pipe: tuple[int, Notifier],
    restore_signals: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    read_fd, notifier = pipe

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        raise RuntimeError("model warm-up failed")

    sock = public_socket(None, "127.0.0.1", 0)
    apps = WorkerApps(public=app, admin=app, begin_drain=lambda: None)
    code = await asyncio.wait_for(serve(apps, sock, None, grace_s=1, notifier=notifier), 30)
    sock.close()
    assert code == 78
    said = _read(read_fd)
    assert said.startswith(b"boot_failed "), said
    assert said.count(b"\n") == 1
    assert b"ready" not in said
    assert "falcon worker: boot failed:" in capsys.readouterr().err


async def test_a_ready_worker_answers_then_drains_on_sigterm(
    pipe: tuple[int, Notifier], restore_signals: None
) -> None:
    read_fd, notifier = pipe
    drains: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].rsplit(".", 1)[-1]
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    sock = public_socket(None, "127.0.0.1", 0)
    host, port = sock.getsockname()
    apps = WorkerApps(public=app, admin=app, begin_drain=lambda: drains.append(True))
    task = asyncio.create_task(serve(apps, sock, None, grace_s=5, notifier=notifier))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    said = b""
    while b"ready\n" not in said:
        assert loop.time() < deadline, "the worker never said ready"
        assert not task.done(), task
        said += _read(read_fd)
        await asyncio.sleep(0.01)
    async with httpx.AsyncClient() as client:
        resp = await client.get(f"http://{host}:{port}/")
    assert (resp.status_code, resp.text) == (200, "ok")
    os.kill(os.getpid(), signal.SIGTERM)  # handled by serve's loop handler: drain
    assert await asyncio.wait_for(task, 30) == 0
    assert drains == [True]  # readiness went 503 at once
    assert _read(read_fd) == b""  # nothing more said after ready
    sock.close()
