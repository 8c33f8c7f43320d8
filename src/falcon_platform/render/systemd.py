"""A systemd unit for `falcon up`: the production way to run Falcon on one machine (pure).

The supervisor keeps the workers alive; systemd keeps the supervisor alive (``Restart=always``)
and bounds it: memory for every worker plus the supervisor, file descriptors, and the
sandboxing options systemd offers for a network service that writes only under its home::

    text = render_unit(UnitOptions(exec_start=("/srv/falcon/.venv/bin/falcon", "up",
                                               "--env-file", "/etc/falcon/prod.env"),
                                   working_directory=Path("/srv/falcon"), user="falcon",
                                   home=Path("/var/lib/falcon"), workers=4,
                                   memory_limit_mb=512, shutdown_grace_s=30))
    write_atomic(Path("/etc/systemd/system/falcon.service"), text)

Choices, each a line in the unit's comments: ``Type=notify`` (the supervisor says READY=1 once
its socket and control API are up, and pings the watchdog from its loop, so a *hung*
supervisor is restarted too); ``KillMode=mixed`` (SIGTERM to the supervisor only: it drains
its workers; whatever is left at ``TimeoutStopSec`` gets SIGKILL); ``--env-file`` on the
command line rather than ``EnvironmentFile=`` (the gate and every worker read the same file
the same way); no ``MemoryDenyWriteExecute=`` (NumPy/SciPy wheels may map executable pages).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

UNIT_FILENAME = "falcon.service"
SUPERVISOR_HEADROOM_MB = 768  # supervisor + zygotes + page cache for SQLite, above the workers
STOP_MARGIN_S = 15  # past the workers' drain grace before systemd SIGKILLs


@dataclass(frozen=True)
class UnitOptions:
    exec_start: Sequence[str]
    working_directory: Path
    home: Path  # FALCON_HOME: the only place the service writes
    workers: int
    memory_limit_mb: int  # per worker (0: no per-worker limit; the unit still bounds the total)
    shutdown_grace_s: float
    user: str = "falcon"
    group: str | None = None
    restart_sec: float = 2.0
    nofile: int = 65536
    watchdog_sec: int = 30
    description: str = "Falcon ML inference platform (supervisor and workers)"

    def memory_max_mb(self) -> int:
        per_worker = self.memory_limit_mb if self.memory_limit_mb > 0 else 1024
        # +1 worker: a rolling restart runs one surge worker beside the others
        return (self.workers + 1) * per_worker + SUPERVISOR_HEADROOM_MB


def _quote(argv: Sequence[str]) -> str:
    # systemd's ExecStart= splits like a shell for simple quoting; shlex.join quotes the rest.
    return shlex.join(argv)


def render_unit(options: UnitOptions) -> str:
    """The unit file's text."""
    o = options
    group = o.group or o.user
    stop_s = int(o.shutdown_grace_s) + STOP_MARGIN_S
    lines = [
        "# Rendered by `falcon render systemd`. Do not edit: change the options and render again.",
        "# Install: sudo cp falcon.service /etc/systemd/system/ && sudo systemctl daemon-reload",
        "#          && sudo systemctl enable --now falcon",
        "[Unit]",
        f"Description={o.description}",
        "Documentation=https://github.com/falcon-platform/falcon/blob/main/docs/RUNBOOK.md#running-under-systemd",
        "After=network-online.target",
        "Wants=network-online.target",
        "# Crash-looping supervisor (e.g. a config the gate refuses): stop trying after 10 in 5 min.",
        "StartLimitIntervalSec=300",
        "StartLimitBurst=10",
        "",
        "[Service]",
        "# READY=1 once the public socket and the control API are up; WATCHDOG=1 from the loop.",
        "Type=notify",
        "NotifyAccess=main",
        f"WatchdogSec={o.watchdog_sec}",
        f"ExecStart={_quote(o.exec_start)}",
        f"WorkingDirectory={o.working_directory}",
        f"User={o.user}",
        f"Group={group}",
        "Restart=always",
        f"RestartSec={o.restart_sec:g}",
        "# SIGTERM to the supervisor only: it drains its workers (FALCON_SHUTDOWN_GRACE_S);",
        "# whatever is still running when TimeoutStopSec ends gets SIGKILL.",
        "KillMode=mixed",
        "KillSignal=SIGTERM",
        f"TimeoutStopSec={stop_s}",
        "# First start may train the default model.",
        "TimeoutStartSec=600",
        "# Limits: every worker's memory limit (+1 surge worker) + the supervisor; descriptors for",
        "# connection floods; no swap (a swapping worker is a hung worker).",
        f"MemoryMax={o.memory_max_mb()}M",
        "MemorySwapMax=0",
        f"LimitNOFILE={o.nofile}",
        "TasksMax=4096",
        "UMask=0077",
        "# Sandboxing: writes only under FALCON_HOME; no privileges, devices, kernel knobs.",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "AmbientCapabilities=",
        "ProtectSystem=strict",
        f"ReadWritePaths={o.home}",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "# The memory limit per worker is then the supervisor's RSS watchdog (no cgroup writes).",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "ProtectProc=invisible",
        "RestrictNamespaces=yes",
        "RestrictRealtime=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        "RemoveIPC=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "SystemCallArchitectures=native",
        "SystemCallFilter=@system-service",
        "SystemCallErrorNumber=EPERM",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n"


def render_systemd(options: UnitOptions) -> dict[str, str]:
    """File name -> text for ``falcon render systemd``."""
    return {UNIT_FILENAME: render_unit(options)}
