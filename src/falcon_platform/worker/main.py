"""One worker process: settings, the gate, then the servers (``python -m falcon_platform.worker``).

This is what the supervisor starts for each slot and what each Kubernetes pod runs::

    python -m falcon_platform.worker --fd 3 --admin-socket .falcon/run/w1.sock   # under the supervisor
    falcon worker --host 0.0.0.0 --port 8000                                    # alone (a pod)

The entry point parses its few options with argparse, not the ``falcon`` CLI: a serving
worker does not import Typer or Rich.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from falcon_platform.config.settings import Settings
from falcon_platform.malloc import fix_mmap_threshold
from falcon_platform.worker.connections import connection_limits
from falcon_platform.worker.notify import (
    BOOT_FAILURE_EXIT,
    NOTIFY_FD_ENV,
    SUPERVISOR_PID_ENV,
    Notifier,
)
from falcon_platform.worker.server import WorkerApps, public_socket, serve
from falcon_platform.worker.zygote import preload_model, serve_as_zygote, standby_fd_from_env

log = logging.getLogger("falcon.worker")


def build_serving_apps(settings: Settings, *, allow_faults: bool, model: Any = None) -> WorkerApps:
    """The real apps from ``falcon_platform.serving`` (imported here: heavy).

    ``model`` is a model a standby already loaded (None: the app's lifespan loads it)."""
    from falcon_platform.chaos import faults as chaos_faults
    from falcon_platform.serving.app import create_admin_app, create_app

    injector = chaos_faults.build_injector(settings, allow_faults=allow_faults)
    public_metrics = serves_public_metrics(settings.public_metrics, supervised=supervised())
    app = create_app(settings, faults=injector, model=model, public_metrics=public_metrics)
    metrics = app.state.falcon.metrics
    return WorkerApps(
        public=app,
        admin=create_admin_app(app, app.state.falcon_service),
        begin_drain=app.state.falcon.begin_drain,
        watch_connections=lambda stats: metrics.bind_connections(stats.open, stats.closed),
    )


def supervised() -> bool:
    """This worker was started by a supervisor (not alone, as in a Kubernetes pod)."""
    return os.environ.get(SUPERVISOR_PID_ENV) is not None


def serves_public_metrics(setting: str, *, supervised: bool) -> bool:
    """``/metrics`` on the public port: ``on``/``off`` as set; ``auto`` only for a lone
    worker, because under a supervisor its control port serves every worker's metrics
    (RUNBOOK, README)."""
    return setting == "on" or (setting == "auto" and not supervised)


def gate_workers(*, supervised: bool) -> int | None:
    """The worker count the gate judges memory for: under a supervisor its gate judged
    workers x limit for the machine (None: as configured); a lone worker (one per
    Kubernetes pod) is one worker in its own memory budget."""
    return None if supervised else 1


def boot_failure_line(exc: BaseException) -> str:
    """One line saying why the boot failed, for the notify pipe: the exception's type and
    the first line of its detail (or message)."""
    text = str(getattr(exc, "detail", None) or exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else type(exc).__name__}"


def die_with_supervisor(wait_for_reparent_s: float = 0.0) -> None:
    """Under a supervisor: get SIGTERM (drain) if it dies, so no worker is orphaned.

    A zygote-forked worker is re-parented to the supervisor a moment after it starts;
    ``wait_for_reparent_s`` waits for that before arming the signal.
    """
    raw = os.environ.get(SUPERVISOR_PID_ENV, "")
    if not raw.isdigit() or not sys.platform.startswith("linux"):
        return
    import ctypes
    import time

    deadline = time.monotonic() + wait_for_reparent_s
    while os.getppid() != int(raw) and time.monotonic() < deadline:
        time.sleep(0.002)
    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != int(raw):  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def worker_main(
    *,
    fd: int | None,
    host: str | None,
    port: int | None,
    admin_socket: Path | None,
    override_reason: str | None,
    allow_faults: bool,
    profile: str | None = None,
    env_file: Path | None = None,
) -> int:
    """``falcon worker``: settings, spec, the gate, then :func:`run_worker`.

    Any failure before the server accepts is a *boot failure*: said once on stderr and to
    the supervisor, exit 78, so the supervisor backs off instead of retrying in a tight loop.
    """
    os.umask(0o077)  # the spool, sockets and SQLite files it creates are its user's alone
    fix_mmap_threshold()  # freed big blocks go back to the kernel (malloc.py)
    notifier = Notifier.from_env()
    die_with_supervisor()
    model = None
    standby_fd = standby_fd_from_env()
    if standby_fd is not None:
        model = preload_model(profile, env_file)
        notifier.send("standby")
        assignment = serve_as_zygote(standby_fd)
        if assignment is None:
            return 0  # the supervisor stood this zygote down
        # From here on: a freshly forked worker with its own identity and notify pipe.
        notifier.close()
        os.environ.update(assignment.env)
        if assignment.notify_fd is not None:
            os.environ[NOTIFY_FD_ENV] = str(assignment.notify_fd)
        notifier = Notifier.from_env()
        admin_socket = assignment.admin_socket
        die_with_supervisor(wait_for_reparent_s=2.0)
    try:
        from falcon_platform.config.gate import enforce_gate
        from falcon_platform.config.settings import load_settings
        from falcon_platform.config.specfile import load_spec
        from falcon_platform.observability.logging import configure_logging

        overrides: dict[str, Any] = {}
        if host is not None:
            overrides["host"] = host
        if port is not None:
            overrides["port"] = port
        settings = load_settings(profile=profile, env_file=env_file, **overrides)
        configure_logging(settings.log_level, settings.log_format)
        spec = load_spec(settings.spec_path)
        outcome = enforce_gate(
            settings,
            spec,
            override_reason=override_reason,
            allow_faults=allow_faults,
            workers=gate_workers(supervised=supervised()),
        )
        if outcome.overridden:
            log.error(outcome.summary())
    except Exception as exc:
        notifier.send(f"boot_failed {boot_failure_line(exc)}")
        print(f"falcon worker: boot failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return BOOT_FAILURE_EXIT
    return run_worker(
        settings, fd=fd, admin_socket=admin_socket, allow_faults=allow_faults, model=model
    )


def run_worker(
    settings: Settings,
    *,
    fd: int | None,
    admin_socket: Path | None,
    allow_faults: bool,
    build_apps: Callable[..., WorkerApps] = build_serving_apps,
    model: Any = None,
) -> int:
    """Entry point of ``falcon worker``; returns the process exit code."""
    notifier = Notifier.from_env()
    try:
        apps = build_apps(settings, allow_faults=allow_faults, model=model)
        sock = public_socket(fd, settings.host, settings.port)
        limits = connection_limits(settings)
    except Exception as exc:
        # Say why once, loudly; the supervisor reads it and does not retry in a tight loop.
        notifier.send(f"boot_failed {boot_failure_line(exc)}")
        print(f"falcon worker: boot failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return BOOT_FAILURE_EXIT
    import uvloop

    if admin_socket is not None:
        admin_socket.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            admin_socket.unlink()
    tls = None
    if settings.tls_certfile is not None and settings.tls_keyfile is not None:
        tls = (settings.tls_certfile, settings.tls_keyfile)

    return uvloop.run(
        serve(
            apps,
            sock,
            admin_socket,
            grace_s=settings.shutdown_grace_s,
            notifier=notifier,
            tls_files=tls,
            limits=limits,
        )
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m falcon_platform.worker",
        description="Run one Falcon worker; SIGTERM drains and exits 0.",
    )
    parser.add_argument("--fd", type=int, help="inherited listening socket (from the supervisor)")
    parser.add_argument("--host", help="bind here instead of --fd")
    parser.add_argument("--port", type=int, help="bind here instead of --fd")
    parser.add_argument(
        "--admin-socket", type=Path, help="UNIX socket for /healthz /readyz /metrics"
    )
    parser.add_argument("--override-gate", metavar="REASON", help="start despite the prod policy")
    parser.add_argument("--allow-faults", action="store_true", help="allow FALCON_FAULTS in prod")
    parser.add_argument("--profile", help="dev, staging or prod")
    parser.add_argument("--env-file", type=Path, help="settings file")
    args = parser.parse_args(argv)
    if args.fd is not None and (args.host is not None or args.port is not None):
        parser.error("give either --fd or --host/--port, not both")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m falcon_platform.worker [options]``; returns the exit code."""
    args = parse_args(argv)
    return worker_main(
        fd=args.fd,
        host=args.host,
        port=args.port,
        admin_socket=args.admin_socket,
        override_reason=args.override_gate,
        allow_faults=args.allow_faults,
        profile=args.profile,
        env_file=args.env_file,
    )
