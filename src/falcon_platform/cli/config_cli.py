"""`falcon config ...`: check (the deployment gate), show, fingerprint, diff, template.

falcon config check --profile prod --env-file deploy/prod.env --format json
falcon config show --json
falcon config fingerprint > before.json ; falcon config diff before.json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from falcon_platform.cli.consoles import stderr_console, stdout_console
from falcon_platform.cli.options import EnvFileOpt, ProfileOpt

if TYPE_CHECKING:
    from falcon_platform.config.fingerprint import Fingerprint
    from falcon_platform.config.gate import CheckReport
    from falcon_platform.config.settings import Settings

app = typer.Typer(
    help="Check, show and compare configuration (the deployment gate).", no_args_is_help=True
)

SpecOpt = Annotated[
    Path | None, typer.Option("--spec", help="Spec file (default FALCON_SPEC_PATH, falcon.yaml).")
]


def _stdout() -> Console:
    return stdout_console()


def _stderr() -> Console:
    return stderr_console()


@app.command()
def check(
    profile: ProfileOpt = None,
    env_file: EnvFileOpt = None,
    spec: SpecOpt = None,
    output_format: Annotated[
        str, typer.Option("--format", help="text or json.", case_sensitive=False)
    ] = "text",
    allow_faults: Annotated[
        bool, typer.Option("--allow-faults", help="Judge as a deliberate fault drill.")
    ] = False,
    memory_mb: Annotated[
        int | None,
        typer.Option("--machine-memory-mb", help="Target machine memory (default: this one)."),
    ] = None,
    cpus: Annotated[
        int | None, typer.Option("--machine-cpus", help="Target machine cores (default: this one).")
    ] = None,
) -> None:
    """Validate types, ranges and the policy; exit 1 listing every violation."""
    from falcon_platform.config.gate import check_config
    from falcon_platform.config.machine import MachineFacts, read_machine_facts
    from falcon_platform.errors import PolicyViolationError

    if output_format.lower() not in ("text", "json"):
        raise typer.BadParameter("use text or json", param_hint="--format")
    here = read_machine_facts()
    machine = MachineFacts(
        memory_mb=memory_mb if memory_mb is not None else here.memory_mb,
        cpu_count=cpus if cpus is not None else here.cpu_count,
        source="command line" if memory_mb is not None else here.source,
        cgroup_limited=here.cgroup_limited if memory_mb is None else False,
    )
    report = check_config(
        profile=profile,
        env_file=env_file,
        spec_path=spec,
        machine=machine,
        allow_faults=allow_faults,
    )
    if output_format.lower() == "json":
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        _render_report(report)
    if report.errors:
        raise PolicyViolationError(
            f"{len(report.errors)} violation(s) for profile {report.profile}: "
            f"{', '.join(sorted({v.rule for v in report.errors}))}. Fix them before deploying "
            "(docs/RUNBOOK.md, one section per rule id)."
        )
    _stderr().print(f"config OK for profile {report.profile} ({len(report.warnings)} warning(s))")


def _render_report(report: CheckReport) -> None:
    out = _stdout()
    if not report.violations:
        out.print(f"profile {report.profile}: no violations")
        return
    for v in report.errors + report.warnings:
        tag = "[bold red]ERROR[/]" if v.severity == "error" else "[yellow]WARN[/] "
        out.print(f"{tag} [bold]{v.rule}[/]  {v.variable}={v.value}", markup=True)
        out.print(f"      why: {v.why}", markup=False)
        out.print(f"      fix: {v.fix}", markup=False)


def _settings(profile: str | None, env_file: Path | None) -> Settings:
    from falcon_platform.config.settings import load_settings

    return load_settings(profile=profile, env_file=env_file)


def _effective_fingerprint(
    profile: str | None, env_file: Path | None, spec: Path | None
) -> Fingerprint:
    from falcon_platform.config.fingerprint import fingerprint, salt_for
    from falcon_platform.config.specfile import load_spec

    settings = _settings(profile, env_file)
    spec_path = spec if spec is not None else _default_spec(settings)
    return fingerprint(settings, load_spec(spec_path), salt=salt_for(settings.run_dir))


def _default_spec(settings: Settings) -> Path | None:
    return settings.spec_path if settings.spec_path.is_file() else None


@app.command()
def show(
    profile: ProfileOpt = None,
    env_file: EnvFileOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Print the effective settings and where each value came from; secrets redacted."""
    from falcon_platform.config.settings import SECRET_FIELDS

    settings = _settings(profile, env_file)
    sources = settings.sources
    rows: dict[str, dict[str, Any]] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if name in SECRET_FIELDS:
            shown: Any = "<unset>" if value is None else "<set>"
        else:
            shown = str(value) if isinstance(value, Path) else value
        rows[name] = {"value": shown, "source": sources[name]}
    if as_json:
        typer.echo(json.dumps({"profile": settings.profile, "settings": rows}, indent=2))
        return
    table = Table(title=f"Falcon settings (profile {settings.profile})")
    table.add_column("variable")
    table.add_column("value")
    table.add_column("source")
    for name, row in rows.items():
        table.add_row(f"FALCON_{name.upper()}", str(row["value"]), row["source"])
    _stdout().print(table)
    if settings.faults:
        _stderr().print(
            f"[bold red]DANGER: FALCON_FAULTS={escape(settings.faults)} injects faults[/] "
            "(refused in prod without --allow-faults)"
        )
    if settings.debug_switches:
        _stderr().print(
            "[yellow]debug switches seen:[/] " + ", ".join(sorted(settings.debug_switches))
        )


@app.command("fingerprint")
def fingerprint_cmd(
    profile: ProfileOpt = None, env_file: EnvFileOpt = None, spec: SpecOpt = None
) -> None:
    """Print the fingerprint of the effective settings + spec as JSON (secrets masked)."""
    typer.echo(json.dumps(_effective_fingerprint(profile, env_file, spec).to_dict(), indent=2))


def _fingerprint_of(path: Path, profile: str | None, spec: Path | None) -> Fingerprint:
    """A ``.json`` file is a saved fingerprint; any other file is an env file."""
    from falcon_platform.config.fingerprint import Fingerprint
    from falcon_platform.errors import ConfigError

    if not path.is_file():
        raise ConfigError(f"{path} does not exist: give a fingerprint .json or an env file")
    if path.suffix == ".json":
        try:
            return Fingerprint.from_dict(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"{path} is not a fingerprint (make one with `falcon config fingerprint`): {exc}"
            ) from None
    return _effective_fingerprint(profile, path, spec)


def _running_fingerprint(settings: Settings) -> Fingerprint:
    from falcon_platform.config.remote import fetch_running_fingerprint

    return fetch_running_fingerprint(settings)


@app.command()
def diff(
    old: Annotated[Path | None, typer.Argument(help="Fingerprint .json or env file.")] = None,
    new: Annotated[Path | None, typer.Argument(help="Fingerprint .json or env file.")] = None,
    profile: ProfileOpt = None,
    env_file: EnvFileOpt = None,
    spec: SpecOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Keys that differ; exit 1 when they differ (like diff(1)).

    Two files: OLD vs NEW. One file: the running config (supervisor ``GET /config``,
    else the effective settings here) vs the file. None: running vs effective.
    An env file is evaluated like --env-file: this shell's FALCON_* variables still win.
    """
    from falcon_platform.config.fingerprint import describe_changes
    from falcon_platform.errors import SupervisorUnreachableError

    err = _stderr()
    if old is not None and new is not None:
        before, after = _fingerprint_of(old, profile, spec), _fingerprint_of(new, profile, spec)
        labels = (str(old), str(new))
    else:
        settings = _settings(profile, env_file)
        try:
            before, label = _running_fingerprint(settings), "running"
        except SupervisorUnreachableError as exc:
            if old is None:
                raise
            err.print(f"{exc.detail}; comparing against the effective settings instead")
            before, label = _effective_fingerprint(profile, env_file, spec), "effective"
        if old is None:
            after, labels = _effective_fingerprint(profile, env_file, spec), (label, "effective")
        else:
            after, labels = _fingerprint_of(old, profile, spec), (label, str(old))
    rows = describe_changes(before, after)
    if as_json:
        payload = {
            "old": labels[0],
            "new": labels[1],
            "old_digest": before.digest,
            "new_digest": after.digest,
            "changes": rows,
        }
        typer.echo(json.dumps(payload, indent=2))
    elif not rows:
        typer.echo(f"no changes ({labels[0]} = {labels[1]}, fingerprint {after.short})")
    else:
        table = Table(title=f"{labels[0]} ({before.short}) -> {labels[1]} ({after.short})")
        for column in ("key", "old", "new"):
            table.add_column(column)
        for row in rows:
            table.add_row(row["key"], row["old"], row["new"])
        _stdout().print(table)
    if rows:
        raise typer.Exit(1)


@app.command()
def template() -> None:
    """Print the commented default spec (what ships as falcon.yaml)."""
    from falcon_platform.config.spec_template import render_spec_template

    typer.echo(render_spec_template(), nl=False)
