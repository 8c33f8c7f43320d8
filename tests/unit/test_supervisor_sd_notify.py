"""The supervisor's systemd notifications over a real datagram socket (NOTIFY_SOCKET)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from falcon_platform.supervisor.sd_notify import SystemdNotifier


def test_ready_and_watchdog_reach_the_socket_and_pings_are_paced(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.settimeout(2)
        notifier = SystemdNotifier.from_environ(
            {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"},
            pid=42,
        )
        assert notifier.watchdog_interval_s == 15.0  # half of WatchdogSec=30
        assert notifier.send("READY=1", "STATUS=serving\nnow")
        assert server.recv(4096) == b"READY=1\nSTATUS=serving now"
        notifier.watchdog(100.0)
        notifier.watchdog(110.0)  # not due yet
        notifier.watchdog(115.0)
        server.setblocking(False)
        received = []
        while True:
            try:
                received.append(server.recv(4096))
            except BlockingIOError:
                break
        assert received == [b"WATCHDOG=1", b"WATCHDOG=1"]


def test_outside_systemd_nothing_is_sent() -> None:
    notifier = SystemdNotifier.from_environ({})
    assert not notifier.active
    assert notifier.send("READY=1") is False
    other = SystemdNotifier.from_environ(
        {"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "7"}, pid=8
    )
    assert other.watchdog_interval_s is None  # the watchdog is another process's


@pytest.mark.timeout(10)  # the old blocking send hangs here: fail in seconds, not 300
def test_a_reader_that_does_not_read_never_blocks_the_sender(tmp_path: Path) -> None:
    """The supervisor's loop sends the pings: a full notify queue drops them, it never waits."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        notifier = SystemdNotifier(str(path), watchdog_interval_s=0.0)
        started = time.monotonic()
        sent = [notifier.send("WATCHDOG=1") for _ in range(200)]  # far past max_dgram_qlen
        assert time.monotonic() - started < 5  # a blocking send would hang here for ever
        assert sent[0] is True
        assert sent[-1] is False  # dropped, and said so
        notifier.watchdog(1.0)  # a dropped ping is not counted as sent: retried next pass
        assert notifier._last_ping == float("-inf")
