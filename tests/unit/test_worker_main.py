"""The worker's entry point (``worker.main``): its options, what it decides from being under a
supervisor or alone, and a boot failure reported once on the notify pipe with exit 78.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from falcon_platform.config.settings import Settings
from falcon_platform.errors import ConfigError
from falcon_platform.worker.main import (
    boot_failure_line,
    die_with_supervisor,
    gate_workers,
    parse_args,
    run_worker,
    serves_public_metrics,
    supervised,
)
from falcon_platform.worker.server import WorkerApps


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], {"fd": None, "host": None, "port": None, "admin_socket": None,
              "override_gate": None, "allow_faults": False, "profile": None, "env_file": None}),
        (["--fd", "3", "--admin-socket", "/run/w1.sock", "--allow-faults"],
         {"fd": 3, "admin_socket": Path("/run/w1.sock"), "allow_faults": True}),
        (["--host", "0.0.0.0", "--port", "8000", "--profile", "prod"],
         {"host": "0.0.0.0", "port": 8000, "profile": "prod"}),
        (["--override-gate", "incident 42", "--env-file", "prod.env"],
         {"override_gate": "incident 42", "env_file": Path("prod.env")}),
    ],
)  # fmt: skip
def test_options(argv: list[str], expected: dict[str, Any]) -> None:
    args = vars(parse_args(argv))
    assert {k: args[k] for k in expected} == expected


@pytest.mark.parametrize(
    "argv",
    [["--fd", "3", "--host", "0.0.0.0"], ["--fd", "3", "--port", "8000"], ["--fd", "x"],
     ["--port", "eighty"], ["--unknown"]],
)  # fmt: skip
def test_bad_options_exit_2_with_a_message(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(argv)
    assert exited.value.code == 2
    assert "python -m falcon_platform.worker" in capsys.readouterr().err


def test_giving_both_a_socket_and_an_address_says_which(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--fd", "3", "--port", "8000"])
    assert "give either --fd or --host/--port, not both" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("setting", "is_supervised", "expected"),
    [
        ("on", True, True),
        ("on", False, True),
        ("off", True, False),
        ("off", False, False),
        ("auto", True, False),  # the supervisor's control port serves them
        ("auto", False, True),  # a lone pod serves its own
    ],
)
def test_public_metrics(setting: str, is_supervised: bool, expected: bool) -> None:
    assert serves_public_metrics(setting, supervised=is_supervised) is expected


def test_the_gate_judges_a_lone_worker_as_one_worker() -> None:
    assert gate_workers(supervised=False) == 1
    assert gate_workers(supervised=True) is None


def test_supervised_reads_the_supervisors_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FALCON_SUPERVISOR_PID", raising=False)
    assert supervised() is False
    monkeypatch.setenv("FALCON_SUPERVISOR_PID", "1234")
    assert supervised() is True


class DetailedError(Exception):
    def __init__(self, message: str, detail: str) -> None:
        super().__init__(message)
        self.detail = detail


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (RuntimeError("model file missing"), "RuntimeError: model file missing"),
        (RuntimeError("first\nsecond\nthird"), "RuntimeError: first"),
        (RuntimeError("\n  padded\nrest"), "RuntimeError: padded"),
        (RuntimeError(""), "RuntimeError: RuntimeError"),
        (RuntimeError("   "), "RuntimeError: RuntimeError"),
        (DetailedError("short", "the detail\nmore"), "DetailedError: the detail"),
        (DetailedError("short", ""), "DetailedError: short"),  # an empty detail: the message
        (ConfigError("FALCON_WORKERS='x': not a number"),
         "ConfigError: FALCON_WORKERS='x': not a number"),
    ],
)  # fmt: skip
def test_boot_failure_line(exc: BaseException, expected: str) -> None:
    assert boot_failure_line(exc) == expected


def test_die_with_supervisor_does_nothing_without_a_supervisor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Alone (no pid, or garbage in the variable) the worker arms nothing and keeps running."""
    for value in (None, "", "not-a-pid"):
        if value is None:
            monkeypatch.delenv("FALCON_SUPERVISOR_PID", raising=False)
        else:
            monkeypatch.setenv("FALCON_SUPERVISOR_PID", value)
        die_with_supervisor(wait_for_reparent_s=5.0)  # returns at once, no signal


# --- a boot failure, reported on a real notify pipe -------------------------------------------


@pytest.fixture
def notify_pipe(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """The read end of a pipe whose write end the worker finds in FALCON_NOTIFY_FD."""
    read_fd, write_fd = os.pipe()
    monkeypatch.setenv("FALCON_NOTIFY_FD", str(write_fd))
    yield read_fd
    os.close(read_fd)
    os.close(write_fd)


def _said(read_fd: int) -> bytes:
    os.set_blocking(read_fd, False)
    try:
        return os.read(read_fd, 65536)
    except BlockingIOError:
        return b""


def _apps() -> WorkerApps:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("never served")

    return WorkerApps(public=app, admin=app, begin_drain=lambda: None)


def test_an_app_that_cannot_be_built_is_a_boot_failure(
    tmp_path: Path, notify_pipe: int, capsys: pytest.CaptureFixture[str]
) -> None:
    def build_apps(settings: Settings, **_: Any) -> WorkerApps:
        raise FileNotFoundError("no model at /models/m.skops\n(run `falcon model train`)")

    code = run_worker(
        Settings(home=tmp_path), fd=None, admin_socket=None, allow_faults=False,
        build_apps=build_apps,
    )  # fmt: skip
    assert code == 78
    assert _said(notify_pipe) == b"boot_failed FileNotFoundError: no model at /models/m.skops\n"
    err = capsys.readouterr().err
    assert "falcon worker: boot failed: FileNotFoundError: no model at /models/m.skops" in err
    assert "(run `falcon model train`)" in err  # stderr has the whole message


def test_a_port_already_taken_is_a_boot_failure(
    tmp_path: Path, notify_pipe: int, capsys: pytest.CaptureFixture[str]
) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        port = taken.getsockname()[1]
        settings = Settings(home=tmp_path, host="127.0.0.1", port=port)
        code = run_worker(
            settings, fd=None, admin_socket=None, allow_faults=False,
            build_apps=lambda *_, **__: _apps(),
        )  # fmt: skip
    finally:
        taken.close()
    assert code == 78
    said = _said(notify_pipe)
    assert said.startswith(b"boot_failed OSError: [Errno 98]"), said
    assert said.count(b"\n") == 1  # said once
    assert "boot failed" in capsys.readouterr().err
