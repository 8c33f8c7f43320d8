"""`falcon render ...` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="render commands.", no_args_is_help=True)
