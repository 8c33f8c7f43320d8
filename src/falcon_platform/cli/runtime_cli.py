"""Top-level runtime commands, registered on the main app."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this domain's commands to the main `falcon` app."""
    del app
