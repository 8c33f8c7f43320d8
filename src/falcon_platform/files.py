"""Writing files so a reader sees the old content or the new, never a part.

Generators return text (rules, dashboards, postmortems, metadata); this is the one place
that puts it on disk. Hand-written (temp file in the same directory, fsync, rename, fsync the
directory): a few lines of the standard library that no well-kept library does just so.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: bytes | str, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` (str is written as UTF-8) atomically and durably."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def bind_private_unix_socket(path: Path, backlog: int = 128) -> socket.socket:
    """A listening UNIX socket at ``path`` only its owner may connect to (mode 0600).

    Bound under a 077 umask, so the file is never connectable by others, not even briefly
    (uvicorn's own ``uds=`` makes it 0666); a stale socket file is replaced.
    """
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(backlog)
    sock.setblocking(False)
    return sock
