"""systemd's notify protocol for the supervisor: READY=1, WATCHDOG=1, STOPPING=1, STATUS=.

Under the rendered unit (``Type=notify``, ``WatchdogSec=``) systemd passes ``NOTIFY_SOCKET``
and ``WATCHDOG_USEC``; without them every call is a no-op. Hand-written: the protocol is one
datagram on a UNIX socket, and the packages that wrap it add nothing for these four messages::

    notifier = SystemdNotifier.from_environ(os.environ)
    notifier.send("READY=1", "STATUS=serving on http://127.0.0.1:8000")
    notifier.watchdog(time.monotonic())   # from the loop: at most every WATCHDOG_USEC / 2
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Mapping


class SystemdNotifier:
    def __init__(self, address: str | None, watchdog_interval_s: float | None) -> None:
        if address and address.startswith("@"):
            address = "\0" + address[1:]  # an abstract socket
        self.address = address or None
        self.watchdog_interval_s = watchdog_interval_s
        self._last_ping = float("-inf")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], pid: int | None = None) -> SystemdNotifier:
        raw = environ.get("WATCHDOG_USEC", "")
        owner = environ.get("WATCHDOG_PID", "")
        interval = None
        if raw.isdigit() and int(raw) > 0 and (not owner or pid is None or owner == str(pid)):
            interval = int(raw) / 1_000_000 / 2  # ping twice per timeout, as systemd advises
        return cls(environ.get("NOTIFY_SOCKET"), interval)

    @property
    def active(self) -> bool:
        return self.address is not None

    def send(self, *lines: str) -> bool:
        """One datagram of ``KEY=value`` lines; False when not under systemd or it failed.

        Never blocks: a UNIX datagram socket whose reader lags (its queue holds
        ``net.unix.max_dgram_qlen`` datagrams, 10 by default) would otherwise stop the
        supervisor's loop inside ``sendto``. A message that does not fit is dropped and
        reported as not sent (a watchdog ping is then retried on the next pass).
        """
        if self.address is None:
            return False
        payload = "\n".join(line.replace("\n", " ") for line in lines).encode()
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(payload, socket.MSG_DONTWAIT, self.address)
            return True
        return False

    def watchdog(self, now: float) -> None:
        """Tell systemd the loop is alive, if the unit asked and a ping is due."""
        if self.watchdog_interval_s is None or now - self._last_ping < self.watchdog_interval_s:
            return
        if self.send("WATCHDOG=1"):
            self._last_ping = now
