"""The supervisor's systemd notifications over a real datagram socket (NOTIFY_SOCKET)."""

from __future__ import annotations

import socket
from pathlib import Path

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
