"""A user's mistake on the command line: one line on stderr, the closest valid choice, exit 2.

The table runs each wrong invocation through ``falcon_platform.cli.main.run`` (the console
script's entry point, with Click's real parser) and a few through the installed ``falcon``
script itself; none may print a traceback. The second half pins that every command that talks
to a running Falcon offers the same address options (``--profile``, ``--env-file``).
"""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer

from falcon_platform.cli.main import app, run
from falcon_platform.cli.options import ADDRESS_OPTIONS
from falcon_platform.cli.usage import closest_options
from falcon_platform.events.journal import EventKind

FALCON = str(Path(sys.executable).parent / "falcon")

# (argv, a fragment the one line must hold); expected by hand from each command's options
WRONG = [
    (["status", "--bogus"], "valid: --json, --profile/-p, --env-file"),
    (["status", "--jsn"], "did you mean --json?"),
    (["alerts", "--env-fil", "x"], "did you mean --env-file?"),
    (["alerts", "--bogus"], "no option --bogus"),
    (["statu"], "Did you mean 'status'"),
    (["--bogus"], "falcon: no option --bogus"),
    (["up", "--workers", "0"], "'--workers'"),
    (["up", "--workers", "abc"], "valid integer"),
    (["up", "--bas"], "did you mean --base?"),
    (["events", "--limit"], "falcon events: Option '--limit' requires an argument"),
    (["events", "--kind", "nonsense"], "no event kind 'nonsense'"),
    (["events", "--kind", "worker_exitd"], "did you mean worker_exited"),
    (["config", "check", "--format", "xml"], "use text or json"),
    (["config", "diff", "a", "b", "c"], "unexpected extra argument"),
    (["config", "chek"], "Did you mean 'check'"),
    (["db", "ship", "--wroker", "w1"], "did you mean --worker?"),
    (["loadtest", "run", "--rat", "5"], "did you mean --rate?"),
    (["restart", "--set"], "requires an argument"),
    (["render", "k8s", "--nope"], "falcon render k8s: no option --nope"),
    (["model", "verify", "--pth", "x"], "did you mean --path?"),
]


@pytest.mark.parametrize(("argv", "fragment"), WRONG, ids=[" ".join(a) for a, _ in WRONG])
def test_usage_error_is_one_line_with_the_fix_and_exit_2(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        run(argv)
    out, err = capsys.readouterr()
    assert done.value.code == 2, err
    assert out == ""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: falcon"), err
    assert fragment in lines[0]
    assert "--help`)" in lines[0]  # where to read more


def test_a_group_without_a_command_shows_its_help_and_exits_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as done:
        run(["config"])
    out, err = capsys.readouterr()
    assert done.value.code == 2
    assert "check" in out + err
    assert "Traceback" not in out + err


@pytest.mark.parametrize(
    "argv", [["status", "--bogus"], ["alerts", "--env-fil", "x"], ["nonsense"]]
)
def test_the_installed_falcon_script_prints_no_traceback(argv: list[str], tmp_path: Path) -> None:
    done = subprocess.run(
        [FALCON, *argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "FALCON_HOME": str(tmp_path)},
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stdout == ""


def test_every_event_kind_is_accepted_by_events_kind() -> None:
    from falcon_platform.events.journal import unknown_kind_message

    assert all(unknown_kind_message(k.value) is None for k in EventKind)
    message = unknown_kind_message("worker_exit") or ""
    assert "did you mean worker_exited" in message
    assert "liveness_kill" in message  # the list of kinds is there


def test_a_detached_start_that_fails_shows_the_error_line_of_its_log() -> None:
    from falcon_platform.cli.runtime_cli import why_it_exited

    log = "INFO starting\nerror: cannot reach the database at x (FALCON_DATABASE_URL)\n\n"
    assert why_it_exited(log) == "cannot reach the database at x (FALCON_DATABASE_URL)"
    assert why_it_exited("Killed\n") == "Killed"
    assert why_it_exited("") == "it printed nothing"


def test_closest_options_guesses_by_spelling_only() -> None:
    valid = ["--json", "--profile/-p", "--env-file", "--help"]
    assert closest_options("--envfile", valid) == ["--env-file"]
    assert closest_options("--profiel=prod", valid) == ["--profile"]
    assert closest_options("--zzz", valid) == []
    assert closest_options("--nope", ["--spec", "--worker"]) == []


def test_db_ship_for_a_worker_without_a_spool_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FALCON_HOME", str(tmp_path))
    (tmp_path / "spool" / "w1").mkdir(parents=True)
    with pytest.raises(SystemExit) as done:
        run(["db", "ship", "--worker", "w3"])
    err = capsys.readouterr().err
    assert done.value.code == 2, err
    assert "no spool for worker 'w3'" in err
    assert "workers with a spool: w1" in err


# -- the same address options on every command that talks to a running Falcon ----------------

# What a command's code calls when it reaches a running Falcon (control API or public port).
_TALKS = re.compile(
    r"control_client\(|client_for\(|\b_?client\(|ControlClient|_running_fingerprint\(|run_drill\("
)


def _commands(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    subs = getattr(command, "commands", None)
    if subs is None:
        return [(" ".join(path), command)]
    found: list[tuple[str, Any]] = []
    for name, sub in sorted(subs.items()):
        found += _commands(sub, (*path, name))
    return found


COMMANDS = _commands(typer.main.get_command(app))


def _talks_to_falcon(command: Any) -> bool:
    """The callback builds a client, or calls a function of its module that does."""
    callback = getattr(command, "callback", None)
    if callback is None:
        return False
    function = inspect.unwrap(callback)
    source = inspect.getsource(function)
    if _TALKS.search(source):
        return True
    helpers = (function.__globals__.get(name) for name in re.findall(r"\b(_\w+)\(", source))
    return any(
        inspect.isfunction(h) and _TALKS.search(inspect.getsource(h)) is not None for h in helpers
    )


TALKING = [(name, c) for name, c in COMMANDS if _talks_to_falcon(c)]


def test_the_tree_has_commands_that_talk_to_falcon() -> None:
    # hand-written: these must be found, or the detector is blind
    expected = {"status", "alerts", "events", "restart", "down", "loadtest run", "config diff",
                "releases show", "drill run", "incident ack"}  # fmt: skip
    assert expected <= {name for name, _ in TALKING}


@pytest.mark.parametrize(("name", "command"), TALKING, ids=[n for n, _ in TALKING])
def test_commands_that_talk_to_falcon_take_profile_and_env_file(name: str, command: Any) -> None:
    options = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
    missing = [o for o in ADDRESS_OPTIONS if o not in options]
    assert not missing, f"`falcon {name}` talks to a running Falcon but lacks {missing}"
