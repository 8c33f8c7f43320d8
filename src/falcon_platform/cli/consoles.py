"""The consoles commands print with: data on stdout, diagnostics on stderr, no wrapping in pipes.

Rich wraps tables at 80 columns when stdout is not a terminal (a pipe, a file, ``watch``), which
cut ``falcon status`` into unreadable fragments; output that is not a terminal gets the width it
needs instead (``COLUMNS`` still wins when set)::

    from falcon_platform.cli.consoles import stderr_console, stdout_console
    stdout_console().print(table)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from rich.console import Console

UNWRAPPED = 1000  # columns for output that is not a terminal: wide enough for any table


def console_width(is_terminal: bool, environ: Mapping[str, str]) -> int | None:
    """None (Rich decides: the terminal's width, or COLUMNS) or the width for a pipe (pure)."""
    if is_terminal or environ.get("COLUMNS", "").isdigit():
        return None
    return UNWRAPPED


def stdout_console() -> Console:
    return Console(
        highlight=False,
        soft_wrap=True,
        width=console_width(sys.stdout.isatty(), os.environ),
    )


def stderr_console() -> Console:
    return Console(
        stderr=True,
        highlight=False,
        soft_wrap=True,
        width=console_width(sys.stderr.isatty(), os.environ),
    )
