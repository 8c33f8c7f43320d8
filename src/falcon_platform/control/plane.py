"""Wiring for ``falcon up``: stores, journal, SLI store, token, gate, control API, supervisor.

The CLI parses and renders; this builds the objects and runs them on one event loop::

    code = asyncio.run(serve(settings, spec, workers=2, gate=outcome, on_listening=print_url))
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import uvicorn

from falcon_platform.config.admin_token import ensure_admin_token
from falcon_platform.config.gate import GateOutcome
from falcon_platform.config.private_dir import ensure_private_dir
from falcon_platform.config.settings import Settings
from falcon_platform.config.spec import Spec
from falcon_platform.control.alerting import alerting_plugin
from falcon_platform.control.api import create_control_app
from falcon_platform.control.incidents_routes import incidents_plugin
from falcon_platform.errors import RuntimeStateError
from falcon_platform.events.journal import (
    BufferedJournal,
    EventJournal,
    EventKind,
    SqlEventJournal,
)
from falcon_platform.files import bind_private_unix_socket
from falcon_platform.observability.sli_store import SLIStore
from falcon_platform.supervisor.enforcers import detect_enforcer
from falcon_platform.supervisor.release_gate import ReleaseGate
from falcon_platform.supervisor.supervisor import (
    Supervisor,
    admin_socket_dir,
    open_public_socket,
)
from falcon_platform.worker.server import QuietServer

log = logging.getLogger("falcon.supervisor")


def state_file(settings: Settings) -> Path:
    """``<run_dir>/supervisor.json``: pid and addresses of the running supervisor."""
    return settings.run_dir / "supervisor.json"


def note_unclean_shutdown(settings: Settings, journal: EventJournal) -> dict[str, Any] | None:
    """The previous supervisor left its state file behind: it died without shutting down
    (SIGKILL, OOM, power loss). Journal ``supervisor_unclean_shutdown`` with what is known.

    Called after this supervisor bound the public port, so the previous one is not running.
    """
    path = state_file(settings)
    try:
        previous = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        previous = {}
    last = journal.query(limit=1)
    last_ts = last[-1].ts if last else None
    details: dict[str, Any] = {
        "previous_pid": previous.get("pid"),
        "previous_started_at": previous.get("started_at"),
        "last_event_at": last_ts,
        "last_event_kind": last[-1].kind if last else None,
        "down_for_s": round(time.time() - last_ts, 3) if last_ts else None,
    }
    journal.record(EventKind.SUPERVISOR_UNCLEAN_SHUTDOWN, details=details)
    log.error(
        "the previous supervisor (pid %s) did not shut down cleanly; its last journal event "
        "was %s s ago",
        details["previous_pid"],
        details["down_for_s"],
    )
    with contextlib.suppress(OSError):
        path.unlink()
    return details


def tighten_state_files(settings: Settings) -> None:
    """Databases made by an earlier version (0644) become 0600: the request log and stored
    idempotent answers are not for other local users."""
    for pattern in ("*.db", "*.db-wal", "*.db-shm", "*.db-journal"):
        for path in settings.data_dir.glob(pattern):
            with contextlib.suppress(OSError):
                if path.stat().st_uid == os.geteuid():
                    path.chmod(0o600)


def journal_config(
    settings: Settings, spec: Spec, journal: EventJournal, gate: GateOutcome | None
) -> dict[str, Any]:
    """Journal the settings fingerprint, what changed since the last start, and a gate override."""
    from falcon_platform.config.fingerprint import (
        Fingerprint,
        describe_changes,
        fingerprint,
        load_or_create_salt,
    )

    current = fingerprint(settings, spec, salt=load_or_create_salt(settings.run_dir))
    previous = journal.query(kinds=[EventKind.SETTINGS_FINGERPRINT], limit=1)
    journal.record(EventKind.SETTINGS_FINGERPRINT, details=current.to_dict())
    if previous:
        old = Fingerprint.from_dict(dict(previous[-1].details))
        if old.digest != current.digest:
            journal.record(
                EventKind.CONFIG_CHANGED,
                details={
                    "from": old.digest,
                    "to": current.digest,
                    "changes": describe_changes(old, current),
                },
            )
    if gate is not None and gate.overridden:
        journal.record(EventKind.GATE_OVERRIDE, details={"path": "up", **gate.to_dict()})
        log.error(gate.summary())
    return {"fingerprint": current.to_dict(), "gate": gate.to_dict() if gate is not None else None}


async def serve(
    settings: Settings,
    spec: Spec,
    *,
    workers: int | None = None,
    gate: GateOutcome | None = None,
    worker_args: Sequence[str] = (),
    on_listening: Callable[[Supervisor], None] | None = None,
    release_gate: ReleaseGate | None = None,
    base_gate_args: Sequence[str] = (),
    base_release: bool = False,
) -> int:
    """Run the supervisor and its control API until stopped; returns the exit code.

    Workers start on the last stable release (restored from the release store), or on the
    base release (the settings as they are now) with ``base_release`` (``falcon up --base``)
    or when it cannot be resumed: ``ReleaseManager.start``."""
    from falcon_platform.stores.database import ensure_schema, make_engine

    # One line per probe/scrape (several a second) would drown the supervisor's own log.
    logging.getLogger("httpx").setLevel(logging.WARNING)

    # Everything the supervisor and its workers create is theirs alone: files 0600,
    # directories 0700 (workers inherit the umask), verified before use.
    os.umask(0o077)
    for directory in (settings.run_dir, settings.data_dir, settings.spool_dir):
        ensure_private_dir(directory)
    ensure_private_dir(admin_socket_dir(settings.run_dir))
    tighten_state_files(settings)
    await asyncio.to_thread(ensure_schema, settings)
    engine = make_engine(settings, pool_size=2)
    journal = BufferedJournal(SqlEventJournal(engine))
    sli = SLIStore(settings.data_dir / "sli.db", retention_s=settings.sli_retention_days * 86400)
    token = ensure_admin_token(settings)
    note_unclean_shutdown(settings, journal)
    config_info = journal_config(settings, spec, journal, gate)
    sock = open_public_socket(settings.host, settings.port)
    enforcer = detect_enforcer(str(os.getpid()), prefer=settings.memory_enforcement)
    if settings.memory_enforcement == "cgroup" and not enforcer.kernel_enforced:
        sock.close()
        raise RuntimeStateError(
            "FALCON_MEMORY_ENFORCEMENT=cgroup but no writable memory cgroup is available "
            "(needs root and a cgroup v1/v2 memory controller); use auto or watchdog"
        )
    routers, periodic = alerting_plugin(settings, spec, sli, journal, token)
    incident_routers, incident_tasks, incident_service = incidents_plugin(
        spec,
        engine,
        journal,
        token,
        sli=sli,
        scrape_interval_s=settings.sli_scrape_interval_s,
        workers_total=lambda: sum(supervisor.desired.values()),
    )
    routers, periodic = [*routers, *incident_routers], [*periodic, *incident_tasks]
    supervisor = Supervisor(
        settings,
        spec,
        journal,
        sli=sli,
        enforcer=enforcer,
        workers=workers,
        periodic=periodic,
        worker_args=worker_args,
        sock=sock,
        standby=settings.zygote,
        release_gate=release_gate,
        base_gate_args=base_gate_args,
    )
    incident_service.bind_metrics(supervisor.metrics.registry)
    from falcon_platform.control.releases_routes import create_releases_router
    from falcon_platform.releases.manager import ReleaseManager
    from falcon_platform.releases.rollout import Rollouts
    from falcon_platform.releases.store import ReleaseStore

    releases = ReleaseManager(supervisor, ReleaseStore(engine), journal)
    rollouts = Rollouts(releases, engine=engine)
    try:
        await asyncio.to_thread(releases.start, base_requested=base_release)
    except Exception as exc:  # the release history must not keep the service down
        log.error("cannot record the starting release in the release store: %s", exc)
    routers = [*routers, create_releases_router(releases, rollouts, token)]
    from falcon_platform.control.console.routes import create_console_router
    from falcon_platform.control.slo_routes import create_slo_router

    routers = [
        *routers,
        create_slo_router(spec, sli.open_reader, token),
        create_console_router(token),
    ]
    app = create_control_app(
        supervisor, journal, token, config_info=config_info, extra_routers=routers
    )
    control_sockets = None
    if settings.control_socket is not None:
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
        control_sockets = [bind_private_unix_socket(settings.control_socket)]  # 0600
    else:
        config = uvicorn.Config(
            app,
            host=settings.control_host,
            port=settings.control_port,
            log_config=None,
            access_log=False,
            lifespan="off",
        )
    control = QuietServer(config)
    control_task = asyncio.create_task(control.serve(sockets=control_sockets))
    if not await control.wait_started(control_task):
        sock.close()
        enforcer.close()
        with contextlib.suppress(BaseException):
            await control_task
        where = settings.control_socket or f"{settings.control_host}:{settings.control_port}"
        raise RuntimeStateError(
            f"cannot serve the control API on {where} (in use? is a supervisor already running? "
            "`falcon status`); set FALCON_CONTROL_PORT to a free port"
        )
    state_file(settings).write_text(
        json.dumps(
            {
                "pid": os.getpid(),
                "started_at": supervisor.started_wall,
                "url": supervisor.url,
                "control": str(settings.control_socket)
                if settings.control_socket
                else f"http://{settings.control_host}:{settings.control_port}",
            }
        )
    )
    if on_listening is not None:
        on_listening(supervisor)
    # Under systemd (Type=notify): the socket and the control API are up. Workers are not
    # waited for: until one is ready the supervisor answers 503 itself.
    supervisor.systemd.send("READY=1", f"STATUS=serving on {supervisor.url}")
    try:
        code = await supervisor.run()
    finally:
        await rollouts.close()
        control.should_exit = True
        with contextlib.suppress(BaseException):
            await control_task
        with contextlib.suppress(FileNotFoundError):
            state_file(settings).unlink()
        engine.dispose()
    return code


def journal_gate_refusal(settings: Settings, details: dict[str, Any]) -> None:
    """``falcon up`` refused by the gate: record it in the journal before exiting (best
    effort: a database that cannot be reached must not hide the refusal itself)."""
    from falcon_platform.stores.database import ensure_schema, make_engine

    try:
        for directory in (settings.run_dir, settings.data_dir):
            directory.mkdir(parents=True, exist_ok=True)
        ensure_schema(settings)
        engine = make_engine(settings, pool_size=1)
        try:
            SqlEventJournal(engine).record(EventKind.GATE_REFUSED, details=details)
        finally:
            engine.dispose()
    except Exception as exc:
        log.warning("could not journal the gate refusal: %s", exc)
