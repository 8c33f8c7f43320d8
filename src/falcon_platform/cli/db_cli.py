"""`falcon db ...`: schema migrations and the request-log spool.

falcon db upgrade [--json]          apply migrations (SQLite by default, FALCON_DATABASE_URL if set)
falcon db current [--json]          the database's revision vs. this release's head
falcon db ship [--worker W] [--json] ship request-log segments left on disk (e.g. by a dead worker)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from falcon_platform.cli.options import EnvFileOpt, JsonOpt, ProfileOpt

if TYPE_CHECKING:
    from falcon_platform.config.settings import Settings

app = typer.Typer(help="Database schema and request-log spool.", no_args_is_help=True)


def _settings(profile: str | None, env_file: Path | None) -> Settings:
    from falcon_platform.config.settings import load_settings

    return load_settings(profile=profile, env_file=env_file)


def _emit(data: dict[str, Any], as_json: bool, text: str) -> None:
    if as_json:
        typer.echo(json.dumps(data, sort_keys=True))
    else:
        Console(soft_wrap=True).print(text, highlight=False)


@app.command()
def upgrade(
    profile: ProfileOpt = None, env_file: EnvFileOpt = None, as_json: JsonOpt = False
) -> None:
    """Apply every migration up to head; safe to run again."""
    from falcon_platform.stores.database import upgrade as run_upgrade

    settings = _settings(profile, env_file)
    Console(stderr=True).print("applying migrations ...", highlight=False)
    state = run_upgrade(settings)
    _emit(state.as_dict(), as_json, f"{state.url}: at revision {state.current} (head {state.head})")


@app.command()
def current(
    profile: ProfileOpt = None, env_file: EnvFileOpt = None, as_json: JsonOpt = False
) -> None:
    """Show the database's schema revision and whether it is behind this release."""
    from falcon_platform.errors import SchemaBehindError
    from falcon_platform.stores.database import UPGRADE_COMMAND, schema_state

    state = schema_state(_settings(profile, env_file))
    hint = "up to date" if state.up_to_date else f"BEHIND: run `{UPGRADE_COMMAND}`"
    _emit(
        state.as_dict(),
        as_json,
        f"{state.url}: revision {state.current or 'none'}, head {state.head} ({hint})",
    )
    if not state.up_to_date:
        raise SchemaBehindError(f"schema behind: run `{UPGRADE_COMMAND}`")


@app.command()
def ship(
    worker: Annotated[
        str | None, typer.Option("--worker", help="Only this worker's spool.")
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Give up after this many seconds.")
    ] = 60.0,
    profile: ProfileOpt = None,
    env_file: EnvFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Ship request-log segments waiting on disk into the database (idempotent)."""
    from falcon_platform.errors import DependencyError
    from falcon_platform.stores.request_log import ship_orphans

    settings = _settings(profile, env_file)
    report = ship_orphans(settings, worker, timeout_s=timeout)
    _emit(
        {"rows_shipped": report.rows_shipped, "segments_left": report.segments_left},
        as_json,
        f"shipped {report.rows_shipped} rows; {report.segments_left} segments left on disk",
    )
    if report.segments_left:
        raise DependencyError(
            f"{report.segments_left} segments could not be shipped (database unreachable or "
            "timeout); they stay on disk, run again when the database is back"
        )
