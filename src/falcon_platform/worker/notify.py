"""The worker's side of the notify protocol with its supervisor (like ``sd_notify``).

The supervisor passes a pipe in ``FALCON_NOTIFY_FD``; the worker writes one line per
message: ``standby`` (a zygote is preloaded), ``ready`` (accepting), or
``boot_failed <why>`` before exiting with :data:`BOOT_FAILURE_EXIT`::

    notifier = Notifier.from_env()
    notifier.send("ready")

Kept apart from the worker's server so the supervisor can import the names without
importing uvicorn or the serving stack.
"""

from __future__ import annotations

import contextlib
import os

NOTIFY_FD_ENV = "FALCON_NOTIFY_FD"
SUPERVISOR_PID_ENV = "FALCON_SUPERVISOR_PID"
BOOT_FAILURE_EXIT = 78  # EX_CONFIG: the supervisor treats it as "do not retry in a tight loop"


class Notifier:
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
    def from_env(cls) -> Notifier:
        raw = os.environ.get(NOTIFY_FD_ENV)
        return cls(int(raw) if raw and raw.isdigit() else None)
