"""Output that is not a terminal is not wrapped at 80 columns (`falcon status | grep w1`)."""

from __future__ import annotations

import pytest
from rich.table import Table

from falcon_platform.cli.consoles import UNWRAPPED, console_width, stdout_console


def test_width_rule() -> None:
    assert console_width(True, {}) is None  # a terminal: its own width
    assert console_width(False, {"COLUMNS": "120"}) is None  # the user's choice (Rich reads it)
    assert console_width(False, {}) == UNWRAPPED
    assert console_width(False, {"COLUMNS": "wide"}) == UNWRAPPED


def test_a_wide_table_stays_one_line_per_row_in_a_pipe(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    table = Table()
    columns = ["worker", "pid", "release", "state", "RSS MB / limit", "restarts", "last exit"]
    for column in columns:
        table.add_column(column)
    table.add_row("w1", "4242", "r0", "ready", "93 / 512", "0", "OOMKilled (137) peak 512 MB" * 3)
    stdout_console().print(table)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5  # top rule, header, separator, the row, bottom rule: nothing wrapped
    assert all(name in lines[1] for name in columns)
    assert len(lines[3]) > 80
