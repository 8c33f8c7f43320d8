"""`falcon loadtest` without a server: profiles listed, bad flags refused with exit 2 and a fix."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from falcon_platform.cli.loadtest_cli import progress_line
from falcon_platform.cli.main import app
from falcon_platform.loadtest.run import Progress

FALCON = str(Path(sys.executable).parent / "falcon")


def test_profiles_lists_the_shipped_and_the_users(tmp_path: Path) -> None:
    spec = tmp_path / "falcon.yaml"
    spec.write_text(
        "loadtest:\n  profiles:\n    gate:\n      stages: [{duration: 20s, rate: 100}]\n"
    )
    result = CliRunner().invoke(app, ["loadtest", "profiles", "--json", "--spec", str(spec)])
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert {"smoke", "baseline", "stress", "spike", "soak", "gate"} <= set(found)
    assert found["gate"]["stages"] == [{"duration": 20.0, "rate": 100.0}]


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--rate", "5"], "--rate and --duration go together"),
     (["--stages", "30s"], "DURATION:RATE"),
     (["smoke", "--threshold", "p99 < 5"], "did you mean 'p99_ms'"),
     (["nope"], "no load-test profile 'nope'"),
     (["smoke", "--endpoint", "grpc"], "choose infer, batch or v2"),
     (["--rate", "5", "--duration", "soon"], "invalid duration")],
)  # fmt: skip
def test_bad_requests_exit_2_with_the_fix_on_stderr(args: list[str], message: str,
                                                    tmp_path: Path) -> None:  # fmt: skip
    done = subprocess.run([FALCON, "loadtest", "run", *args, "--target", "http://127.0.0.1:9"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "FALCON_HOME": str(tmp_path)})  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert done.stdout == ""


def test_progress_line_is_one_greppable_line() -> None:
    line = progress_line(Progress(3.2, 10, 50, 49, 12.345, 1, 0, 3, 0.4, {"w1": 171.6}))
    assert line == ("t=3s/10s target=50/s sent=49/s p99=12.35ms errors=1 dropped=0 "
                    "in_flight=3 lag_p99=0.4ms w1=172MB")  # fmt: skip
