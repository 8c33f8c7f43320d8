"""The supervisor's sockets: the public listening socket and where worker admin sockets live.

sock = open_public_socket("127.0.0.1", 8000)   # inherited by every worker (``--fd``)
admin_socket_dir(settings.run_dir)            # <run_dir>/workers, or a short /tmp path
"""

from __future__ import annotations

import errno
import hashlib
import socket
import tempfile
from pathlib import Path

from falcon_platform.errors import RuntimeStateError

_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes; keep a margin


def admin_socket_dir(run_dir: Path) -> Path:
    """Where worker admin sockets live; a short /tmp path when ``run_dir`` is too deep for AF_UNIX."""
    preferred = run_dir / "workers"
    if len(str(preferred.resolve() / "w9999.sock")) <= _MAX_SOCKET_PATH:
        return preferred
    digest = hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"falcon-{digest}"


def open_public_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """The listening socket every worker inherits (SO_REUSEADDR so a restart can rebind)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise RuntimeStateError(
                f"{host}:{port} is already in use; is Falcon already running (`falcon status`)? "
                "Otherwise set FALCON_PORT to a free port."
            ) from exc
        raise RuntimeStateError(f"cannot listen on {host}:{port}: {exc}") from exc
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def ensure_port_free(host: str, port: int, *, what: str = "FALCON_PORT") -> None:
    """Raise ``RuntimeStateError`` now if ``host:port`` cannot be bound (checked before slow
    work such as training the first model; the real bind follows and may still lose a race)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise RuntimeStateError(
                    f"{host}:{port} is already in use; is Falcon already running "
                    f"(`falcon status`)? Otherwise set {what} to a free port."
                ) from exc
            raise RuntimeStateError(f"cannot listen on {host}:{port} ({what}): {exc}") from exc
