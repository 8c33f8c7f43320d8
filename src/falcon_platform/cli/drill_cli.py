"""`falcon drill list|run NAME|all`: failure drills against the running deployment.

Each drill checks the steady state, injects its failure under a paced load, measures what
Falcon did, restores, journals a ``drill`` event and writes a Markdown + JSON report
(``<FALCON_HOME>/data/drills/``, and ``--report FILE``)::

    falcon drill list
    falcon drill run kill-worker --report kill.md
    falcon drill run all --json

Exit code: 0 every drill passed (or was not applicable), 1 an expectation was not met or a
drill was refused (the reason is on stderr).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from falcon_platform.cli.options import EnvFileOpt, ProfileOpt

if TYPE_CHECKING:
    from falcon_platform.drills import DrillOutcome

app = typer.Typer(
    help="Failure drills: inject a failure under load, measure, restore, report.",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")]
STATUS_STYLE = {
    "passed": "green",
    "failed": "bold red",
    "refused": "yellow",
    "not_applicable": "dim",
}


@app.command("list")
def list_drills(as_json: JsonOpt = False) -> None:
    """List the drills: what each injects and what Falcon promises."""
    from falcon_platform.drills import CATALOG

    if as_json:
        typer.echo(json.dumps([d.to_dict() for d in CATALOG], indent=2))
        return
    table = Table(title="Falcon drills (falcon drill run NAME)")
    table.add_column("drill", no_wrap=True)
    table.add_column("needs", no_wrap=True)
    table.add_column("injection")
    table.add_column("expected")
    for d in CATALOG:
        table.add_row(
            d.name,
            ", ".join(d.needs) or "—",
            d.injection,
            "; ".join(
                e.text + (f" (<= {e.bound_s:g} s)" if e.bound_s else "") for e in d.expectations
            ),
        )
    Console().print(table)


def summary_table(outcomes: list[DrillOutcome]) -> Table:
    """One row per drill run (pure: data in, table out)."""
    table = Table(title="drill results")
    for col in ("drill", "status", "detect", "mitigate", "failed", "rows lost", "took"):
        table.add_column(col, no_wrap=True)
    table.add_column("reason / report")
    for o in outcomes:
        style = STATUS_STYLE.get(o.status, "")
        table.add_row(
            o.name,
            f"[{style}]{o.status}[/]",
            "—" if o.detection_s is None else f"{o.detection_s:.1f}s",
            "—" if o.mitigation_s is None else f"{o.mitigation_s:.1f}s",
            f"{o.failed}/{o.requests}" if o.requests else "—",
            "—" if o.rows_lost is None else str(o.rows_lost),
            f"{o.finished_at - o.started_at:.0f}s",
            o.reason or (o.report_paths[0] if o.report_paths else ""),
        )
    return table


@app.command("run")
def run(
    name: Annotated[str, typer.Argument(help="A drill from `falcon drill list`, or `all`.")],
    as_json: JsonOpt = False,
    report: Annotated[
        Path | None, typer.Option("--report", help="Also write the Markdown report here (+ .json).")
    ] = None,
    rps: Annotated[
        float | None,
        typer.Option("--rps", min=1, max=2000, help="Paced load (default 20; seed-incident 100)."),
    ] = None,
    seconds: Annotated[
        float | None,
        typer.Option("--seconds", min=1, max=3600, help="Override each drill's wait window."),
    ] = None,
    steady: Annotated[
        float,
        typer.Option("--steady", min=0.5, max=600, help="Seconds of load before and after."),
    ] = 3.0,
    allow_faults: Annotated[
        bool, typer.Option("--allow-faults", help="Allow fault drills under the prod profile.")
    ] = False,
    profile: ProfileOpt = None,
    env_file: EnvFileOpt = None,
) -> None:
    """Run one drill (or `all` applicable ones) against the deployment the CLI points at."""
    from falcon_platform.cli.options import settings_for
    from falcon_platform.config.specfile import load_spec
    from falcon_platform.drills import CATALOG, DrillOptions, drill_named, run_drill
    from falcon_platform.drills.records import write_reports

    names = [d.name for d in CATALOG] if name == "all" else [drill_named(name).name]
    if report is not None and len(names) > 1:
        report.mkdir(parents=True, exist_ok=True)
    settings = settings_for(profile, env_file)
    spec = load_spec(settings.spec_path)
    options = DrillOptions(
        rps=rps or 20.0,
        rps_default=rps is None,
        allow_faults=allow_faults,
        seconds=seconds,
        baseline_s=steady,
        settle_s=steady,
    )
    err = Console(stderr=True, soft_wrap=True)
    outcomes = []
    for drill_name in names:
        err.print(f"[bold]drill {drill_name}[/]", highlight=False)
        outcome = run_drill(drill_name, settings, spec, options,
                            on_step=lambda what: err.print(f"  {what}", highlight=False))  # fmt: skip
        extra = None
        if report is not None:
            extra = report / f"{drill_name}.md" if len(names) > 1 else report
        if outcome.status != "not_applicable":
            write_reports(outcome, drill_named(drill_name), settings.data_dir / "drills", extra)
        if outcome.reason:
            err.print(f"  {outcome.status}: {outcome.reason}", highlight=False, markup=False)
        outcomes.append(outcome)
    for o in outcomes:
        rows = o.measured.get("side_by_side")
        if rows and not as_json:
            table = Table(title="the seed incident and Falcon, side by side")
            for head in rows[0]:
                table.add_column(head or "measure")
            for row in rows[1:]:
                table.add_row(*row)
            Console(soft_wrap=True).print(table)
    if as_json:
        payload = [o.to_dict() for o in outcomes]
        typer.echo(json.dumps(payload[0] if name != "all" else payload, indent=2))
    else:
        Console(soft_wrap=True).print(summary_table(outcomes))
    if not all(o.ok for o in outcomes):
        raise typer.Exit(1)


def register(main: typer.Typer) -> None:
    main.add_typer(app, name="drill")
