"""`falcon render prometheus|grafana`: stdout by default, atomic files with --out, spec errors exit 2."""

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from falcon_platform.cli.main import app
from falcon_platform.config.spec import Spec
from falcon_platform.render.prometheus import render_rules

FALCON = str(Path(sys.executable).parent / "falcon")


def test_render_prometheus_prints_the_rules_to_stdout(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)  # no falcon.yaml here: the built-in defaults
    result = CliRunner().invoke(app, ["render", "prometheus"])
    assert result.exit_code == 0, result.output
    assert result.stdout == render_rules(Spec())


def test_render_with_out_writes_files_and_reads_the_spec(tmp_path: Path) -> None:
    spec = tmp_path / "falcon.yaml"
    spec.write_text("alerts:\n  error_rate_critical: 0.05\n")
    out = tmp_path / "rendered"
    for what in ("prometheus", "grafana"):
        done = subprocess.run(
            [FALCON, "render", what, "--spec", str(spec), "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout == ""
        assert "wrote" in done.stderr
    assert "falcon:request_error_ratio:rate1m > 0.05" in (out / "falcon-rules.yml").read_text()
    assert json.loads((out / "falcon-dashboard.json").read_text())["schemaVersion"] >= 36


def test_a_bad_spec_is_a_readable_error_with_exit_code_2(tmp_path: Path) -> None:
    spec = tmp_path / "falcon.yaml"
    spec.write_text("alerts:\n  memory_precent: 80\n")
    done = subprocess.run(
        [FALCON, "render", "prometheus", "--spec", str(spec)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert "memory_precent" in done.stderr
    assert done.stdout == ""


def test_render_systemd_runs_falcon_up_with_the_env_file_and_bounds_what_it_reads(
    tmp_path: Path,
) -> None:
    """The unit starts this installation's `falcon up --env-file <absolute path>`, writes only
    under that env file's FALCON_HOME, and sizes MemoryMax from its workers and limit."""
    env_file = tmp_path / "prod.env"
    env_file.write_text(
        "FALCON_HOME=/var/lib/falcon\nFALCON_WORKERS=3\nFALCON_MEMORY_LIMIT_MB=400\n"
    )
    out = tmp_path / "unit"
    done = subprocess.run(
        [FALCON, "render", "systemd", "--env-file", str(env_file), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    text = (out / "falcon.service").read_text()
    assert f"ExecStart={FALCON} up --env-file {env_file}\n" in text
    assert "ReadWritePaths=/var/lib/falcon\n" in text
    assert f"MemoryMax={(3 + 1) * 400 + 768}M\n" in text
    assert f"WorkingDirectory={tmp_path}\n" in text
