"""`falcon render systemd`: the unit is what systemd accepts and says what we mean (issue 11, 12).

Meaning is checked by parsing the unit (configparser reads systemd's INI dialect well enough
for these keys); `systemd-analyze verify` (Debian package `systemd`) checks that systemd itself
accepts it, and catches a broken unit (the last test).
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from falcon_platform.render.systemd import UnitOptions, render_unit

OPTIONS = UnitOptions(
    exec_start=(sys.executable, "-m", "falcon_platform.cli", "up", "--env-file", "/etc/f.env"),
    working_directory=Path("/srv/falcon"),
    home=Path("/var/lib/falcon"),
    workers=4,
    memory_limit_mb=512,
    shutdown_grace_s=30,
)


def _parse(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(text)
    return parser


def test_the_unit_restarts_always_bounds_memory_and_files_and_sandboxes() -> None:
    unit = _parse(render_unit(OPTIONS))
    service = unit["Service"]
    assert service["Restart"] == "always"
    assert service["Type"] == "notify"
    assert service["KillMode"] == "mixed"  # SIGTERM to the supervisor, which drains workers
    # (4 workers + 1 surge) x 512 MB + 768 MB for the supervisor and zygotes
    assert service["MemoryMax"] == f"{5 * 512 + 768}M"
    assert service["MemorySwapMax"] == "0"
    assert service["LimitNOFILE"] == "65536"
    assert service["TimeoutStopSec"] == str(30 + 15)  # the drain grace + margin
    assert service["UMask"] == "0077"
    assert service["ReadWritePaths"] == "/var/lib/falcon"
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "CapabilityBoundingSet": "",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "SystemCallFilter": "@system-service",
    }.items():
        assert service[key] == value, key
    assert service["ExecStart"].endswith("up --env-file /etc/f.env")
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_rendering_is_pure() -> None:
    assert render_unit(OPTIONS) == render_unit(OPTIONS)


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        reason = "systemd-analyze is not installed (Debian: apt-get install -y systemd)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)
    return found


def _verify(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    unit = tmp_path / "falcon.service"
    unit.write_text(text)
    return subprocess.run(
        [_systemd_analyze(), "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    options = UnitOptions(**{**OPTIONS.__dict__, "user": "root"})
    done = _verify(tmp_path, render_unit(options))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "falcon.service" not in done.stderr, done.stderr  # no warning about our unit


def test_systemd_analyze_catches_a_broken_unit(tmp_path: Path) -> None:
    options = UnitOptions(**{**OPTIONS.__dict__, "user": "root"})
    broken = render_unit(options).replace("ExecStart=", "ExecStart=relative/path ")
    done = _verify(tmp_path, broken)
    assert done.returncode != 0 or "falcon.service" in done.stderr
