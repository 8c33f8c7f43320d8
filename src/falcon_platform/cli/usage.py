"""Usage errors as one line: what was wrong, the closest valid choice, where to read more.

Click's own output is a usage block plus ``Error: ...`` on several lines, and the Click that
Typer >= 0.29 vendors is not the ``click`` package, so ``except click.ClickException`` missed
it and users got a traceback. :func:`usage_line` turns any of them into one line::

    error: falcon status: no option --bogus; valid: --json, --profile/-p, --env-file (`falcon status --help`)

Duck-typed on the exception's attributes (``ctx``, ``option_name``, ``possibilities``,
``format_message``) so both Typer's Click and the ``click`` package are understood.
"""

from __future__ import annotations

import difflib
from typing import Any

USAGE_EXIT = 2  # what Click, argparse and the BSD sysexits convention use for usage errors


def usage_exception_types() -> tuple[type[BaseException], ...]:
    """The usage/Click exception bases of every Click that may be loaded."""
    import typer

    found: list[type[BaseException]] = [typer.TyperException]
    try:
        import click
    except ImportError:  # pragma: no cover - only with an old Typer that needs it anyway
        pass
    else:
        found.append(click.ClickException)
    return tuple(found)


def find_command(root: Any, argv: list[str], name: str = "falcon") -> tuple[str, Any]:
    """The deepest command ``argv`` names, and its path (``falcon config check``).

    Click leaves ``ctx`` unset on some errors (an option missing its value); the words the
    user typed still say which command was meant.
    """
    command, path = root, [name]
    for token in argv:
        if token.startswith("-"):
            continue
        sub = (getattr(command, "commands", None) or {}).get(token)
        if sub is None:
            break
        command, path = sub, [*path, token]
    return " ".join(path), command


def _option_names(command: Any) -> list[str]:
    """Each option of ``command`` as ``--long/-s`` (hidden ones left out), then --help."""
    names: list[str] = []
    for param in getattr(command, "params", []):
        if getattr(param, "param_type_name", "") != "option" or getattr(param, "hidden", False):
            continue
        opts = [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]
        longs = [o for o in opts if o.startswith("--")]
        shorts = [o for o in opts if not o.startswith("--")]
        if longs:
            names.append("/".join(longs + shorts))
    return [*names, "--help"]


def closest_options(wrong: str, valid: list[str]) -> list[str]:
    """The valid option names closest to ``wrong`` (pure; difflib's ratio, best first).

    Compared without the leading dashes, which every long option shares (with them Click's
    own guess offers ``--spec`` for ``--nope``).
    """
    flat = {name[2:]: name for group in valid for name in group.split("/") if name[:2] == "--"}
    typed = wrong.split("=", 1)[0].lstrip("-")
    return [flat[n] for n in difflib.get_close_matches(typed, list(flat), n=2, cutoff=0.75)]


def usage_line(exc: BaseException, fallback: tuple[str, Any]) -> str:
    """One line for a Click/Typer usage error (no newline, no traceback).

    ``fallback`` is ``find_command(root, argv)``: used when the error carries no context.
    """
    ctx = getattr(exc, "ctx", None)
    if ctx is not None and getattr(ctx, "command_path", None):
        path, command = str(ctx.command_path), ctx.command
    else:
        path, command = fallback
    help_hint = f"(`{path} --help`)"
    option = getattr(exc, "option_name", None)
    if type(exc).__name__ == "NoSuchOption" and option:
        valid = _option_names(command)
        near = closest_options(option, valid)
        if near:
            guess = " or ".join(near)
            return f"{path}: no option {option}; did you mean {guess}? {help_hint}"
        return f"{path}: no option {option}; valid: {', '.join(valid)} {help_hint}"
    message = _message(exc)
    if message.startswith("No such command") and "Did you mean" not in message:
        commands = sorted(getattr(command, "commands", None) or {})
        if commands:
            message += f" Commands: {', '.join(commands)}."
    return f"{path}: {message} {help_hint}"


def _message(exc: BaseException) -> str:
    format_message = getattr(exc, "format_message", None)
    text = format_message() if callable(format_message) else str(exc)
    return " ".join(str(text).split())  # one line, whatever Click wrapped
