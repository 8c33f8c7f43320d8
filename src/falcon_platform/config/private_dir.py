"""Directories only this user may enter: created 0700, verified before use.

Falcon keeps its admin sockets, the admin token, its databases and the request-log spool in
directories under ``FALCON_HOME`` (and, when that path is too long for a UNIX socket, in
``/tmp/falcon-<hash>``). A local user who creates such a directory first, or points a symlink
at their own, could read the request log or answer the supervisor's health checks. So::

    ensure_private_dir(settings.run_dir)   # mkdir 0700, or check an existing one

refuses (``RuntimeStateError``, saying why and how to fix it) a symlink, a non-directory, a
directory owned by another user, or one that others may write to; an existing directory of
ours that others may only read is tightened to 0700.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from falcon_platform.errors import RuntimeStateError


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (0700, parents as needed) or verify the existing one; return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    info = os.lstat(path)
    fix = f"remove it (`rm -rf {path}` as its owner or root) and start again"
    if stat.S_ISLNK(info.st_mode):
        raise RuntimeStateError(
            f"{path} is a symbolic link (to {os.readlink(path)}); Falcon keeps sockets and "
            f"secrets there, so it refuses a path another user could redirect: {fix}"
        )
    if not stat.S_ISDIR(info.st_mode):
        raise RuntimeStateError(f"{path} exists and is not a directory: {fix}")
    if info.st_uid != os.geteuid():
        raise RuntimeStateError(
            f"{path} belongs to uid {info.st_uid}, not to this user (uid {os.geteuid()}): "
            "another local user may have created it to read Falcon's sockets or data. "
            f"Refusing to use it: {fix}, or set FALCON_HOME to a shorter path of your own"
        )
    if info.st_mode & 0o022:
        raise RuntimeStateError(
            f"{path} is writable by other users (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"anything in it may have been planted: {fix}"
        )
    if info.st_mode & 0o077:
        os.chmod(path, 0o700)  # ours, only readable by others: tighten it
    return path
