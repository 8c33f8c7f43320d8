"""Shared fixtures for integration tests: a trained model, and real server processes.

    def test_x(falcon_server):                    # a running server on a free port
        httpx.post(f"{falcon_server.url}/infer", json={"text": "hi"})

``start_server(tmp_path, model_path, via="uvicorn" | "worker")`` starts one more;
``via="worker"`` runs ``falcon worker`` (exit 0 on SIGTERM), the default runs
``uvicorn --factory falcon_platform.serving.asgi:create_app_from_env``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from falcon_platform.config.settings import Settings
from falcon_platform.testing.net import free_port, wait_for_http

BIN = Path(sys.executable).parent


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    url: str
    port: int
    home: Path
    log_path: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def read_http_response(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """One HTTP/1.1 response (headers + Content-Length body) from a raw socket."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return head + b"\r\n\r\n" + rest


def start_server(
    home: Path,
    model_path: Path,
    *,
    via: str = "uvicorn",
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
) -> ServerProcess:
    port = free_port()
    home.mkdir(parents=True, exist_ok=True)
    full_env = {
        **os.environ,
        "FALCON_HOME": str(home),
        "FALCON_MODEL_PATH": str(model_path),
        "FALCON_LOG_LEVEL": "WARNING",
        **(env or {}),
    }
    if via == "worker":
        cmd = [str(BIN / "falcon"), "worker", "--host", "127.0.0.1", "--port", str(port), *args]
    else:
        cmd = [
            sys.executable, "-m", "uvicorn", "--factory",
            "falcon_platform.serving.asgi:create_app_from_env",
            "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
            "--loop", "uvloop", "--http", "httptools", "--timeout-graceful-shutdown", "20",
        ]  # fmt: skip
    log_path = home / f"server-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    server = ServerProcess(proc, f"http://127.0.0.1:{port}", port, home, log_path)
    try:
        wait_for_http(f"{server.url}/readyz", timeout=90)
    except TimeoutError:
        server.stop(signal.SIGKILL)
        raise AssertionError(f"server did not become ready:\n{server.log()[-3000:]}") from None
    return server


@pytest.fixture(scope="session")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default model, trained once per session (a few seconds)."""
    from falcon_platform.model.registry import ensure_model

    return ensure_model(Settings(home=tmp_path_factory.mktemp("model-home")))


@pytest.fixture(scope="module")
def falcon_server(
    tmp_path_factory: pytest.TempPathFactory, model_path: Path
) -> Iterator[ServerProcess]:
    """One server process per test module (uvicorn + the ASGI factory); 1 s body timeout."""
    server = start_server(
        tmp_path_factory.mktemp("falcon-home"), model_path, env={"FALCON_BODY_TIMEOUT_S": "1"}
    )
    yield server
    try:
        server.stop(signal.SIGTERM, timeout=30)
    except subprocess.TimeoutExpired:
        server.stop(signal.SIGKILL)
