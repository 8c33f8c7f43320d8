"""The ``falcon`` command: one Typer sub-app per domain, composed here.

Commands parse, call, render. Data goes to stdout, diagnostics to stderr.
:func:`run` is the one place a ``FalconError`` becomes a message on stderr and
an exit code; the sub-apps never call ``sys.exit`` themselves.
"""

from __future__ import annotations

import sys

import click
import typer
from rich.console import Console
from rich.markup import escape

from falcon_platform import __version__
from falcon_platform.cli import (
    actions_cli,
    alerts_cli,
    config_cli,
    db_cli,
    drill_cli,
    incident_cli,
    loadtest_cli,
    model_cli,
    releases_cli,
    render_cli,
    runtime_cli,
)
from falcon_platform.cli.usage import (
    USAGE_EXIT,
    find_command,
    usage_exception_types,
    usage_line,
)
from falcon_platform.errors import FalconError

app = typer.Typer(
    name="falcon",
    help="Falcon: serve a model, keep it alive, make every change safe.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(model_cli.app, name="model")
app.add_typer(config_cli.app, name="config")
app.add_typer(db_cli.app, name="db")
app.add_typer(render_cli.app, name="render")
app.add_typer(incident_cli.app, name="incident")
app.add_typer(actions_cli.app, name="actions")
runtime_cli.register(app)
alerts_cli.register(app)
loadtest_cli.register(app)
drill_cli.register(app)
releases_cli.register(app)


@app.command()
def version() -> None:
    """Print Falcon's version."""
    typer.echo(__version__)


def run(argv: list[str] | None = None) -> None:
    """Entry point: translate errors into one stderr line and an exit code.

    A ``FalconError`` exits with its ``exit_code``; a usage error (unknown option or command,
    bad value, missing argument) with 2, as one line naming the closest valid choice
    (:mod:`falcon_platform.cli.usage`). Every sub-app gets this by being added to ``app``.
    """
    # soft_wrap: long messages stay one greppable line; escape: details hold [rule-ids].
    stderr = Console(stderr=True, soft_wrap=True)
    click_errors = usage_exception_types()
    try:
        # With standalone_mode=False click returns (not raises) a typer.Exit's code.
        code = app(args=argv, prog_name="falcon", standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except FalconError as exc:
        stderr.print(f"[bold red]error:[/] {escape(exc.detail)}", highlight=False)
        sys.exit(exc.exit_code)
    except (typer.Exit, click.exceptions.Exit) as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, click.exceptions.Abort):
        stderr.print("aborted")
        sys.exit(130)
    except click_errors as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `falcon model`: the group's help
            # Typer's rich help is printed (stdout) when the error is made; Click's is the text
            text = str(getattr(exc, "format_message", lambda: "")()).strip()
            if text:
                stderr.print(text, markup=False, highlight=False)
            sys.exit(USAGE_EXIT)
        if hasattr(exc, "ctx"):  # a UsageError: the user's mistake, one line
            root = typer.main.get_command(app)
            line = usage_line(exc, find_command(root, sys.argv[1:] if argv is None else argv))
            code = USAGE_EXIT
        else:  # another ClickException (e.g. a file option that cannot be opened)
            format_message = getattr(exc, "format_message", None)
            line = format_message() if callable(format_message) else str(exc)
            code = int(getattr(exc, "exit_code", 1) or 1)
        stderr.print(f"[bold red]error:[/] {escape(line)}", highlight=False)
        sys.exit(code)
    except KeyboardInterrupt:
        sys.exit(130)
