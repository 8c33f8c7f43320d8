"""Private redis-server and PostgreSQL instances on free loopback ports, for integration tests.

    with running_redis() as redis:                 # redis-server --port <free> --save '' ...
        settings = Settings(home=tmp, redis_url=redis.url)
        redis.kill(); redis.start()                # an outage and a recovery, same port
    with running_postgres() as pg:                 # initdb into a temp dir, pg_ctl start
        settings = Settings(home=tmp, database_url=pg.url)
        pg.stop(); pg.start()

A missing binary skips the test with a reason naming it; with ``CI=true`` it fails instead,
so CI can never go green by skipping. PostgreSQL refuses to run as root, so when we are
root it runs as the ``postgres`` OS user (``runuser``), in a temp dir it owns.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from falcon_platform.testing.net import free_port

# The Debian package that brings each binary the tests start.
_PACKAGES = {
    "redis-server": "redis-server",
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "wrk": "wrk",
}


def find_binary(name: str) -> str:
    """Path of ``name`` (PATH, then /usr/lib/postgresql/*/bin); skip, or fail when CI=true."""
    found = shutil.which(name)
    if found is None:
        candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
        found = candidates[0] if candidates else None
    if found is None:
        reason = (
            f"{name} is not installed (Debian: apt-get install -y "
            f"{_PACKAGES.get(name, 'postgresql')}); "
            "scripts/install-system-deps.sh installs it"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)
    return found


def _wait(predicate: object, what: str, timeout: float) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not come up within {timeout}s")


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class RedisServer:
    """One private redis-server; ``kill()`` is SIGKILL, ``start()`` brings it back on the same port."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.binary = find_binary("redis-server")
        self.directory = directory
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.directory),
                "--protected-mode", "no",
                "--logfile", str(self.directory / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait(lambda: _port_open(self.port), f"redis-server on port {self.port}", 10)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def pause(self) -> None:
        """SIGSTOP: Redis hangs (slow, not down) until ``resume()``."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


@contextlib.contextmanager
def running_redis() -> Iterator[RedisServer]:
    directory = Path(tempfile.mkdtemp(prefix="falcon-redis-"))
    server = RedisServer(directory)
    try:
        server.start()
        yield server
    finally:
        if server.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                server.proc.send_signal(signal.SIGCONT)
        server.kill()
        shutil.rmtree(directory, ignore_errors=True)


class PostgresServer:
    """One private PostgreSQL cluster (trust auth, fsync off); ``stop()``/``start()`` keep its data."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.initdb = find_binary("initdb")
        self.pg_ctl = find_binary("pg_ctl")
        self.directory = directory
        self.data = directory / "data"
        self.sockets = directory / "sock"
        self.port = port or free_port()
        self._as_postgres = os.geteuid() == 0  # postgres refuses to run as root

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str, timeout: float = 60) -> None:
        cmd = ["runuser", "-u", "postgres", "--", *argv] if self._as_postgres else list(argv)
        result = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
        if result.returncode != 0:
            log = self.directory / "postgres.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(
                f"{' '.join(argv)} failed ({result.returncode}): "
                f"{result.stderr.decode(errors='replace')[-2000:]}\n{tail}"
            )

    def init(self) -> None:
        self.sockets.mkdir(parents=True, exist_ok=True)
        if self._as_postgres:
            shutil.chown(self.directory, "postgres", "postgres")
            shutil.chown(self.sockets, "postgres", "postgres")
        self._run(
            self.initdb,
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(self.pg_ctl, "-D", str(self.data), "-o", options,
                  "-l", str(self.directory / "postgres.log"), "-w", "-t", "60", "start")  # fmt: skip
        _wait(lambda: _port_open(self.port), f"PostgreSQL on port {self.port}", 30)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast`` disconnects clients; ``immediate`` is a crash)."""
        self._run(self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop")

    def is_running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    # Not under pytest's tmp_path: its parents are 0700 root, the postgres user cannot enter.
    directory = Path(tempfile.mkdtemp(prefix="falcon-pg-"))
    server = PostgresServer(directory)
    try:
        server.init()
        server.start()
        yield server
    finally:
        if server.is_running():
            with contextlib.suppress(Exception):
                server.stop("immediate")
        shutil.rmtree(directory, ignore_errors=True)
