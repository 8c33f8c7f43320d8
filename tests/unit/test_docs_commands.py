"""Every `falcon …` command line in the README, the runbook and KUBERNETES.md exists, with the options it shows.

The runbook is only useful if its commands work when someone is paged; this walks each command
line found in the docs through the real CLI's command tree (subcommands and `--options`).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer

from falcon_platform.cli.main import app

ROOT = Path(__file__).parents[2]
DOCS = [ROOT / "README.md", ROOT / "docs" / "RUNBOOK.md", ROOT / "docs" / "KUBERNETES.md"]
# `falcon …` at the start of a shell line (after env assignments or .venv/bin/) or in `inline code`
_LINE = re.compile(r"^(?:[A-Z_]+=\S*\s+)*(?:\.venv/bin/)?falcon\s+(.*)$")
_INLINE = re.compile(r"`(?:\.venv/bin/)?falcon ([^`]+)`")


def _command_lines() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for doc in DOCS:
        in_code = False
        for line in doc.read_text(encoding="utf-8").splitlines():
            if line.lstrip().startswith("```"):
                in_code = not in_code
                continue
            if in_code:
                for part in re.split(r"&&|\|\||;|\|", line.split(" #")[0]):
                    match = _LINE.match(part.strip())
                    if match:
                        found.append((doc.name, match.group(1).strip()))
            else:
                for inline in _INLINE.findall(line):
                    command = re.split(r"&&|\|\||;|\|", inline)[0].strip()
                    if "…" not in command:
                        found.append((doc.name, command))
    return found


def _is_group(command: Any) -> bool:
    # typer may carry its own click; duck-type instead of isinstance(click.Group)
    return hasattr(command, "commands")


def _check(args_text: str) -> None:
    root = typer.main.get_command(app)
    try:
        args = shlex.split(args_text)
    except ValueError:
        args = args_text.split()
    command: Any = root
    for index, token in enumerate(args):
        if _is_group(command) and not token.startswith("-"):
            sub = command.commands.get(token)
            assert sub is not None, f"`falcon {args_text}`: no command {token!r}"
            command = sub
            continue
        options = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
        for rest in args[index:]:
            if rest.startswith("--"):
                name = rest.split("=", 1)[0]
                assert name in options, f"`falcon {args_text}`: {command.name} has no option {name}"
        break
    assert not _is_group(command) or args_text.strip().endswith("--help"), (
        f"`falcon {args_text}` names a group, not a command"
    )


LINES = _command_lines()


def test_the_docs_show_commands_at_all() -> None:
    assert len(LINES) > 40, LINES


@pytest.mark.parametrize(("doc", "line"), LINES, ids=[f"{d}:{c}" for d, c in LINES])
def test_documented_command_exists(doc: str, line: str) -> None:
    _check(line)
