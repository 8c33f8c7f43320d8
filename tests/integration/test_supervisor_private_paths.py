"""Local users get nothing: private directories, 0600 files and sockets (issue 11, 10 and 11).

Before: admin sockets were 0666, `falcon.db`, its WAL and `sli.db` 0644 in 0755 directories
(another local user read the request log and stored idempotent answers), and a
`/tmp/falcon-<hash>` directory created first by another user was used as is (fake metrics
reached /metrics; a healthy worker was liveness-killed). Real `falcon up` processes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest

from falcon_platform.config.private_dir import ensure_private_dir
from falcon_platform.errors import RuntimeStateError
from falcon_platform.files import bind_private_unix_socket
from falcon_platform.testing.config import clean_environ
from falcon_platform.testing.net import free_port
from falcon_platform.testing.supervisor import start_supervisor, train_model

pytestmark = pytest.mark.integration

NOBODY = 65534


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_model(tmp_path_factory.getbasetemp() / "private-model-home")


def test_state_files_sockets_and_directories_are_the_owners_alone(
    tmp_path: Path, model_dir: Path
) -> None:
    sup = start_supervisor(tmp_path, workers=1, model_dir=model_dir)
    try:
        response = httpx.post(sup.url + "/infer", json={"text": "private"}, timeout=10)
        assert response.status_code == 200
        home = sup.home
        expected = {
            home / "run": 0o700,
            home / "data": 0o700,
            home / "spool": 0o700,
            home / "run" / "workers": 0o700,
            home / "run" / "admin_token": 0o600,
            home / "run" / "supervisor.json": 0o600,
            home / "run" / "workers" / "w1.sock": 0o600,
            home / "data" / "falcon.db": 0o600,
            home / "data" / "falcon.db-wal": 0o600,
            home / "data" / "sli.db": 0o600,
        }
        spool = home / "spool" / "w1"
        if spool.exists():
            expected[spool] = 0o700
        found = {str(p.relative_to(home)): oct(_mode(p)) for p in expected}
        assert found == {str(p.relative_to(home)): oct(m) for p, m in expected.items()}
        assert stat.S_ISSOCK(os.lstat(home / "run" / "workers" / "w1.sock").st_mode)
        # every file the processes made under data/ and spool/ is 0600 (umask 077)
        loose = [
            str(p)
            for d in ("data", "spool")
            for p in (home / d).rglob("*")
            if p.is_file() and _mode(p) & 0o077
        ]
        assert not loose, loose
    finally:
        sup.stop()


def _long_home(tmp_path: Path) -> Path:
    """A FALCON_HOME whose run dir is too deep for AF_UNIX: sockets go to /tmp/falcon-<hash>."""
    home = tmp_path / ("deep-" + "d" * 60) / ("deeper-" + "e" * 60) / "home"
    home.mkdir(parents=True)
    return home


def _fallback_dir(home: Path) -> Path:
    digest = hashlib.sha256(str((home / "run").resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"falcon-{digest}"


@pytest.mark.parametrize("hostile", ["other-owner", "symlink", "world-writable"])
def test_a_precreated_hostile_socket_directory_is_refused(tmp_path: Path, hostile: str) -> None:
    """Another user creates /tmp/falcon-<hash> first (or a symlink to their own directory):
    `falcon up` refuses to start and says why, before any worker or socket exists."""
    home = _long_home(tmp_path)
    trap = _fallback_dir(home)
    theirs = tmp_path / "theirs"
    if trap.is_symlink():
        trap.unlink()
    shutil.rmtree(trap, ignore_errors=True)
    try:
        if hostile == "other-owner":
            trap.mkdir(mode=0o777)
            os.chmod(trap, 0o777)
            os.chown(trap, NOBODY, NOBODY)
        elif hostile == "symlink":
            theirs.mkdir(mode=0o700)
            trap.symlink_to(theirs)
        else:
            trap.mkdir()
            os.chmod(trap, 0o777)
        env = clean_environ(
            {
                "FALCON_HOME": str(home),
                "FALCON_PORT": str(free_port()),
                "FALCON_CONTROL_PORT": str(free_port()),
                "FALCON_MODEL_PATH": str(tmp_path / "unused-model"),
            }
        )
        result = subprocess.run(
            [sys.executable, "-m", "falcon_platform.cli", "up", "--workers", "1"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 6, result.stdout + result.stderr
        why = {
            "other-owner": f"belongs to uid {NOBODY}, not to this user",
            "symlink": "is a symbolic link",
            "world-writable": "is writable by other users (mode 0777)",
        }[hostile]
        assert str(trap) in result.stderr
        assert why in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
        assert not list(trap.resolve().glob("*.sock"))  # nothing was put in it
    finally:
        if trap.is_symlink():
            trap.unlink()
        else:
            shutil.rmtree(trap, ignore_errors=True)


def test_ensure_private_dir_creates_0700_and_tightens_a_readable_one(tmp_path: Path) -> None:
    fresh = ensure_private_dir(tmp_path / "a" / "fresh")
    assert _mode(fresh) == 0o700
    readable = tmp_path / "readable"
    readable.mkdir()
    os.chmod(readable, 0o755)
    ensure_private_dir(readable)
    assert _mode(readable) == 0o700
    plain_file = tmp_path / "file"
    plain_file.write_text("x")
    with pytest.raises(RuntimeStateError, match="is not a directory"):
        ensure_private_dir(plain_file)


def test_private_unix_sockets_are_0600_whatever_the_umask(tmp_path: Path) -> None:
    """The control socket (FALCON_CONTROL_SOCKET) and worker admin sockets use this."""
    old = os.umask(0)
    try:
        sock = bind_private_unix_socket(tmp_path / "control.sock")
    finally:
        os.umask(old)
    try:
        assert _mode(tmp_path / "control.sock") == 0o600
    finally:
        sock.close()
