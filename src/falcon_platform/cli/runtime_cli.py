"""Runtime commands: up, down, status, check-health, restart, events, worker.

    falcon up --workers 2                 # foreground; Ctrl-C drains and stops everything
    falcon up --detach && falcon status   # background; `falcon down` stops it
    falcon check-health || page-someone
    falcon events --since 10m --kind worker_exited --json

Every command except `up` and `worker` talks only to the supervisor's control API.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from falcon_platform.cli.consoles import stderr_console, stdout_console
from falcon_platform.cli.options import (
    BaseReleaseOpt,
    EnvFileOpt,
    JsonOpt,
    ProfileOpt,
    address_args,
)
from falcon_platform.cli.options import client_for as _client
from falcon_platform.cli.options import settings_for as _settings
from falcon_platform.errors import (
    ConfigError,
    DependencyError,
    FalconError,
    ReleaseRefusedError,
    RuntimeStateError,
    SupervisorUnreachableError,
)

if TYPE_CHECKING:
    from falcon_platform.config.settings import Settings

OverrideOpt = Annotated[
    str | None,
    typer.Option(
        "--override-gate", help="Start despite gate violations; the reason is journalled."
    ),
]
FaultsOpt = Annotated[
    bool, typer.Option("--allow-faults", help="Allow FALCON_FAULTS (a deliberate fault drill).")
]


def _out() -> Console:
    return stdout_console()


def _err() -> Console:
    return stderr_console()


def _mb(value: Any) -> str:
    return "-" if value in (None, 0) else f"{value / 1_048_576:.0f}"


def _duration(seconds: Any) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def _ensure_model(settings: Settings) -> None:
    """Train the default model on first start, with a progress bar (model.registry)."""
    from falcon_platform.model.registry import ensure_model

    if settings.model_path is not None:
        return  # an explicit FALCON_MODEL_PATH is the operator's model: never train over it
    if settings.resolved_model_path.exists():
        ensure_model(settings)
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=_err()
    ) as bar:
        task = bar.add_task("training the default model (first start only)", total=None)

        def progress(description: str, completed: int, total: int) -> None:
            bar.update(task, description=description, completed=completed, total=total)

        ensure_model(settings, progress=progress)


def up(
    workers: Annotated[
        int | None,
        typer.Option("--workers", "-w", min=1, help="Worker processes (default: cores)."),
    ] = None,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Run in the background; stop with `falcon down`.")
    ] = False,
    override_gate: OverrideOpt = None,
    allow_faults: FaultsOpt = False,
    base: BaseReleaseOpt = False,
    profile: ProfileOpt = None,
    env_file: EnvFileOpt = None,
    spec_path: Annotated[
        Path | None, typer.Option("--spec", help="Spec file (default FALCON_SPEC_PATH).")
    ] = None,
) -> None:
    """Start the supervisor: the public socket, N workers, the control API.

    The workers run the last stable release (a deploy survives a restart); --base runs the
    env file's settings as they are instead."""
    import asyncio

    from falcon_platform.config.specfile import load_spec
    from falcon_platform.control.plane import journal_gate_refusal
    from falcon_platform.observability.logging import configure_logging
    from falcon_platform.supervisor.release_gate import ReleaseGate, gate_args

    settings = _settings(profile, env_file, **({"spec_path": spec_path} if spec_path else {}))
    spec = load_spec(settings.spec_path)
    # The same gate as every restart and deploy: the merged settings the workers will load.
    release_gate = ReleaseGate(profile=settings.profile, env_file=env_file, spec=spec)
    verdict = release_gate.judge(
        {}, path="up", override_reason=override_gate, allow_faults=allow_faults, workers=workers
    )
    if verdict.refused is not None:
        journal_gate_refusal(settings, verdict.to_dict())
        verdict.raise_if_refused()
    outcome = verdict.outcome
    if outcome is not None and outcome.overridden:
        _err().print(f"[bold red]{escape(outcome.summary())}[/]")
    if outcome is not None and outcome.warnings:  # staging: the prod policy, as warnings
        for finding in outcome.warnings:
            _err().print(f"[yellow]warning:[/] {escape(finding.line())}")
        _err().print(
            f"[yellow]{len(outcome.warnings)} warning(s)[/] for profile {outcome.profile}: "
            "prod would refuse these; `falcon config check"
            f"{address_args(profile, env_file)}` lists them"
        )
    _preflight(settings)
    cli_args: list[str] = []  # what a detached `falcon up` is started with
    if override_gate:
        cli_args += ["--override-gate", override_gate]
    if allow_faults:
        cli_args.append("--allow-faults")
    if base:
        cli_args.append("--base")
    if profile:
        cli_args += ["--profile", profile]
    if env_file:
        cli_args += ["--env-file", str(env_file.resolve())]
    if detach:
        _detach(settings, workers, cli_args, spec_path)
        return
    configure_logging(settings.log_level, settings.log_format)
    _ensure_model(settings)
    from falcon_platform.control.plane import serve

    def unbootable(why: str) -> None:
        _err().print(
            f"[bold red]error:[/] {escape(why)}\n"
            "  Falcon is NOT serving: every request is answered 503. Fix the cause, then "
            "`falcon restart` (or Ctrl-C).",
            highlight=False,
        )

    def announce(supervisor: Any) -> None:
        supervisor.on_unbootable = unbootable
        n = sum(supervisor.desired.values())
        running = ", ".join(r for r, k in supervisor.desired.items() if k > 0)
        _out().print(
            f"Falcon is starting {n} worker(s) of release {running} on {supervisor.url} "
            f"(control API {_control_where(settings)}; Ctrl-C stops)\n"
            f"  curl -s -X POST {supervisor.url}/infer -H 'Content-Type: application/json' "
            '-d \'{"text": "I love this product"}\''
        )
        if settings.control_socket is None:
            _out().print(f"  web console: {_control_where(settings)}/console/")

    code = asyncio.run(
        serve(
            settings,
            spec,
            workers=workers,
            gate=outcome,
            worker_args=release_gate.worker_args(),
            on_listening=announce,
            release_gate=release_gate,
            base_gate_args=gate_args(
                verdict, override_reason=override_gate, allow_faults=allow_faults
            ),
            base_release=base,
        )
    )
    raise typer.Exit(code)


def _preflight(settings: Settings) -> None:
    """Refuse a busy port or an unreachable PostgreSQL now, not after minutes of training the
    first model; warn about an unreachable Redis (Falcon serves without it)."""
    from falcon_platform.stores.preflight import check_stores
    from falcon_platform.supervisor.sockets import ensure_port_free

    ensure_port_free(settings.host, settings.port)
    if settings.control_socket is None:
        ensure_port_free(settings.control_host, settings.control_port, what="FALCON_CONTROL_PORT")
    for problem in check_stores(settings):
        _err().print(f"[yellow]warning:[/] {escape(problem)}")


def _control_where(settings: Settings) -> str:
    from falcon_platform.client.control import control_url

    return control_url(settings)


def _detach(
    settings: Settings, workers: int | None, worker_args: list[str], spec_path: Path | None
) -> None:
    """Start `falcon up` in its own session, wait until its workers are ready, print where."""
    _ensure_model(settings)
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.run_dir / "supervisor.log"
    args = [sys.executable, "-m", "falcon_platform.cli", "up"]
    if workers:
        args += ["--workers", str(workers)]
    if spec_path:
        args += ["--spec", str(spec_path.resolve())]
    args += worker_args
    with log_path.open("ab") as log_file:
        log_start = log_file.tell()
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, start_new_session=True
        )
    deadline = time.monotonic() + 120
    where = _control_where(settings)
    with (
        _client(settings, timeout=2.0) as client,
        _err().status(f"waiting for the supervisor (pid {proc.pid}) to answer on {where}") as spin,
    ):
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                with log_path.open("rb") as log_file:
                    log_file.seek(log_start)  # this start's lines only: the log is appended to
                    said = log_file.read().decode(errors="replace")
                # a dependency's failure keeps its exit code (5) for scripts
                error = DependencyError if proc.returncode == 5 else RuntimeStateError
                raise error(
                    f"the supervisor exited at start (code {proc.returncode}): "
                    f"{why_it_exited(said)} (log {log_path})"
                )
            try:
                status = client.status()
            except SupervisorUnreachableError:
                time.sleep(0.2)
                continue
            if status["supervisor"]["pid"] != proc.pid:
                time.sleep(0.2)
                continue
            sup = status["supervisor"]
            failed = [w for w in status["workers"] if w["state"] == "failed"]
            if failed:
                raise RuntimeStateError(
                    f"the supervisor (pid {proc.pid}) runs, but worker {failed[0]['worker']} cannot "
                    f"boot: {failed[0].get('boot_message') or 'see ' + str(log_path)}; "
                    "fix it, then `falcon restart` (or `falcon down`)"
                )
            if sup["healthy"]:
                spin.stop()
                _out().print(
                    f"Falcon supervisor pid {proc.pid} serving {sup['url']} ({sup['health']}; "
                    f"log {log_path}); `falcon status`, `falcon down`"
                )
                return
            spin.update(f"waiting for workers to become ready: {sup['health']}")
            time.sleep(0.2)
    raise RuntimeStateError(f"the supervisor did not answer within 120 s; see {log_path}")


def why_it_exited(log_text: str) -> str:
    """The ``error: ...`` line a failed `falcon up` printed last, else its last line (pure)."""
    lines = [line.strip() for line in log_text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    if errors:
        return errors[-1].removeprefix("error: ")
    return lines[-1] if lines else "it printed nothing"


def down(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for it to stop.")] = 60.0,
    profile: ProfileOpt = None,
    env_file: EnvFileOpt = None,
) -> None:
    """Stop the supervisor: drain every worker, then exit."""
    settings = _settings(profile, env_file)
    with _client(settings, timeout=5.0) as client:
        answer = client.shutdown()
        pid = int(answer.get("pid") or 0)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                client.status()
            except SupervisorUnreachableError:
                break
            time.sleep(0.2)
        else:
            raise RuntimeStateError(f"the supervisor (pid {pid}) did not stop within {timeout:g} s")
    if pid:
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
    _err().print(f"stopped (supervisor pid {pid})")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def status(
    json_out: JsonOpt = False, profile: ProfileOpt = None, env_file: EnvFileOpt = None
) -> None:
    """Workers (pid, release, state, RSS and PSS vs limit, restarts, last exit, uptime) and the supervisor."""
    settings = _settings(profile, env_file)
    with _client(settings) as client:
        data = client.status()
        data["incidents"] = _incident_summary(client)
        data["release_resume"] = _release_resume(client)
    if json_out:
        typer.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    sup = data["supervisor"]
    table = Table(title=f"Falcon workers on {sup['url']}", title_justify="left")
    for column in (
        "worker",
        "pid",
        "release",
        "state",
        "RSS / PSS MB / limit",
        "restarts",
        "recycles",
        "last exit",
        "uptime",
    ):
        table.add_column(
            column, justify="right" if column in ("pid", "restarts", "recycles") else "left"
        )
    for w in data["workers"]:
        last = w.get("last_exit") or {}
        exit_text = "-"
        if last:
            exit_text = f"{last['reason']} ({last['exit_code']})"
            if last.get("peak_rss_bytes"):
                exit_text += f" peak {_mb(last['peak_rss_bytes'])} MB"
        state = w["state"]
        if w.get("restart_in_s") is not None:
            state += f" (restart in {w['restart_in_s']:.0f}s)"
        if w.get("boot_message") and state in ("failed", "backoff", "CrashLoopBackOff"):
            state += f": {w['boot_message']}"
        table.add_row(
            w["worker"],
            str(w["pid"] or "-"),
            w["release"],
            state,
            f"{_mb(w.get('rss_bytes'))} / {_mb(w.get('pss_bytes'))} / {_mb(w.get('memory_limit_bytes'))}",
            str(w["restarts"]),
            str(w.get("recycles", 0)),
            exit_text,
            _duration(w.get("uptime_s")),
        )
    out = _out()
    out.print(table)
    loops = [r for r, on in sup.get("crash_loop", {}).items() if on]
    out.print(
        f"supervisor pid {sup['pid']} {sup['state']}, up {_duration(sup['uptime_s'])}, "
        f"RSS {_mb(sup.get('rss_bytes'))} MB; desired {sup['desired']}; "
        f"memory limit {_mb(sup.get('memory_limit_bytes'))} MB (soft {_mb(sup.get('memory_soft_limit_bytes'))} MB, "
        f"{sup['memory_enforcement']}); health: {sup['health']}"
        + (f"; [bold red]CrashLoopBackOff: {', '.join(loops)}[/]" if loops else "")
    )
    resume = data.get("release_resume") or {}
    if resume.get("line"):
        out.print(f"[bold yellow]release:[/] {escape(resume['line'])}", highlight=False)
    rolling = sup.get("rolling_restart")
    if rolling and not rolling.get("done"):
        out.print(
            f"rolling restart to {rolling['to_release']}: {rolling['replaced']} replaced, {len(rolling['pending'])} pending"
        )
    stores = data.get("stores")
    if isinstance(stores, dict) and stores:
        parts = [
            f"{name}: {info.get('backend', '?')} {info.get('state', '')}".strip()
            for name, info in stores.items()
            if isinstance(info, dict)
        ]
        out.print("stores: " + "; ".join(parts))
    summary = data.get("incidents") or {}
    for inc in summary.get("open", []):
        out.print(
            f"[bold red]incident {inc['id']} ({inc['severity']}) open:[/] {escape(inc['title'])} "
            f"(`falcon incident show {inc['id']}`)"
        )
    late = summary.get("overdue_actions", [])
    if late:
        out.print(
            f"[yellow]warning: {len(late)} action item(s) overdue: {', '.join(late)}[/] "
            "(`falcon actions list --overdue`)"
        )


def _incident_summary(client: Any) -> dict[str, Any] | None:
    """Open incidents and overdue action items, or None from a supervisor without them."""
    try:
        found = client.incidents(status=["open"], limit=20)
        late = client.actions(overdue=True)["actions"]
    except FalconError:
        return None
    return {
        "open": [{k: i[k] for k in ("id", "severity", "title")} for i in found],
        "overdue_actions": [a["id"] for a in late],
    }


def _release_resume(client: Any) -> dict[str, Any] | None:
    """Why the supervisor runs its base release and not the last stable one (the releases
    API's ``resume``), or None: nothing to say, or a supervisor without releases."""
    try:
        note = client.releases().get("resume")
    except FalconError:
        return None
    return note if isinstance(note, dict) else None


def check_health(profile: ProfileOpt = None, env_file: EnvFileOpt = None) -> None:
    """Exit 0 when enough workers are ready, 1 otherwise; one line saying why."""
    settings = _settings(profile, env_file)
    try:
        with _client(settings, timeout=5.0) as client:
            ok, why = client.health()
    except SupervisorUnreachableError as exc:
        typer.echo(f"unhealthy: {exc.detail}")
        raise typer.Exit(1) from None
    typer.echo(("healthy: " if ok else "unhealthy: ") + why)
    raise typer.Exit(0 if ok else 1)


def restart(
    set_env: Annotated[
        list[str] | None,
        typer.Option("--set", help="FALCON_KEY=VALUE for the new workers (makes a new release)."),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Wait until every worker is replaced.")
    ] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait.")] = 600.0,
    override_gate: OverrideOpt = None,
    allow_faults: FaultsOpt = False,
    profile: ProfileOpt = None,
    env_file: EnvFileOpt = None,
) -> None:
    """Rolling, zero-downtime restart: start a new worker, wait ready, drain an old one; repeat.

    The supervisor runs the config gate on the settings the new workers will run with (its
    profile, its env file read again, plus --set) and refuses a failing prod config."""
    env: dict[str, str] = {}
    for item in set_env or []:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("FALCON_"):
            raise ConfigError(
                f"--set {item!r}: write FALCON_KEY=VALUE, e.g. --set FALCON_LOG_LEVEL=DEBUG"
            )
        env[key] = value
    settings = _settings(profile, env_file)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with _client(settings) as client:
        try:
            started = client.restart(env, override_gate=override_gate, allow_faults=allow_faults)
        except ReleaseRefusedError as exc:  # the gate said no: say where the refusal is kept
            more = f"falcon events --kind gate_refused{address_args(profile, env_file)}"
            raise ReleaseRefusedError(
                f"{exc.detail}; nothing was replaced; more: `{more}`"
            ) from None
        total = len(started["pending"])
        if not wait:
            _out().print(
                f"rolling restart of {total} worker(s) to release {started['to_release']} started"
            )
            return
        deadline = time.monotonic() + timeout
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            console=_err(),
        ) as bar:
            task = bar.add_task(f"replacing workers (release {started['to_release']})", total=total)
            while time.monotonic() < deadline:
                rolling = client.status()["supervisor"]["rolling_restart"] or {}
                bar.update(task, completed=rolling.get("replaced", 0))
                if rolling.get("done"):
                    break
                time.sleep(0.3)
            else:
                raise RuntimeStateError(
                    f"the rolling restart did not finish within {timeout:g} s; see "
                    f"`falcon status{address_args(profile, env_file)}`"
                )
    if rolling.get("failed"):
        more = f"falcon events --release {rolling['to_release']}{address_args(profile, env_file)}"
        raise RuntimeStateError(
            f"rolling restart to release {rolling['to_release']} stopped: {rolling['failed']} "
            f"(old workers kept serving); more: `{more}`"
        )
    _out().print(f"replaced {rolling['replaced']} worker(s); release {rolling['to_release']}")


def _known_kinds(values: list[str] | None) -> list[str] | None:
    """Refuse a kind the journal never writes: a typo would otherwise say "no events match"."""
    from falcon_platform.events.journal import unknown_kind_message

    for value in values or []:
        problem = unknown_kind_message(value)
        if problem is not None:
            raise typer.BadParameter(problem, param_hint="--kind")
    return values


def events(
    since: Annotated[str | None, typer.Option(help="10m, 2h, 1d or an ISO time (UTC).")] = None,
    kind: Annotated[
        list[str] | None,
        typer.Option("--kind", "-k", help="Only this kind (repeatable).", callback=_known_kinds),
    ] = None,
    worker: Annotated[str | None, typer.Option(help="Only this worker.")] = None,
    release: Annotated[str | None, typer.Option(help="Only this release.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many (the newest).")] = 1000,
    json_out: JsonOpt = False,
    profile: ProfileOpt = None,
    env_file: EnvFileOpt = None,
) -> None:
    """The event journal: worker starts/exits (OOMKilled...), restarts, crash loops, alerts."""
    from falcon_platform.events.journal import parse_since

    start = None
    if since:
        try:
            start = parse_since(since, time.time())
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    settings = _settings(profile, env_file)
    with _client(settings) as client:
        found = client.events(
            since=start, kinds=kind or [], release=release, worker=worker, limit=limit
        )
    if json_out:
        typer.echo(json.dumps(found, indent=2))
        return
    out = _out()
    for e in found:
        details = ", ".join(
            f"{k}={v}" for k, v in e["details"].items() if v is not None and k != "values"
        )
        who = "/".join(x for x in (e.get("release"), e.get("worker")) if x)
        out.print(f"{e['time']}  {e['kind']:<22} {who:<10} {details}", markup=False)
    if not found:
        _err().print("no events match")


def worker(
    fd: Annotated[
        int | None, typer.Option("--fd", help="Inherited listening socket (from the supervisor).")
    ] = None,
    host: Annotated[str | None, typer.Option("--host", help="Bind here instead of --fd.")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Bind here instead of --fd.")] = None,
    admin_socket: Annotated[
        Path | None,
        typer.Option("--admin-socket", help="UNIX socket for /healthz /readyz /metrics."),
    ] = None,
    override_gate: OverrideOpt = None,
    allow_faults: FaultsOpt = False,
    profile: ProfileOpt = None,
    env_file: EnvFileOpt = None,
) -> None:
    """Run one worker (what each Kubernetes pod runs); SIGTERM drains and exits 0."""
    from falcon_platform.worker.main import worker_main

    if fd is not None and (host is not None or port is not None):
        raise ConfigError("give either --fd or --host/--port, not both")
    code = worker_main(
        fd=fd,
        host=host,
        port=port,
        admin_socket=admin_socket,
        override_reason=override_gate,
        allow_faults=allow_faults,
        profile=profile,
        env_file=env_file,
    )
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add this domain's commands to the main `falcon` app."""
    app.command()(up)
    app.command()(down)
    app.command()(status)
    app.command("check-health")(check_health)
    app.command()(restart)
    app.command()(events)
    app.command()(worker)
