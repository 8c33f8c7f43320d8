"""Who may call the control API: the Bearer credential and whether the caller is local.

Reads are open to loopback callers (and the UNIX socket, guarded by file permissions);
anything that changes state needs the admin token (``config.admin_token``)::

    if not is_loopback(request) and bearer_token(request.headers.get("authorization")) != token: ...
"""

from __future__ import annotations

import ipaddress

from starlette.requests import Request


def bearer_token(authorization: str | None) -> str | None:
    """The credential of an ``Authorization: Bearer <token>`` header, if that is what it is."""
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


def is_loopback(request: Request) -> bool:
    """Whether the caller is on this machine (read-only control calls are open to it)."""
    client = request.client
    if client is None or not client.host:  # UNIX socket: guarded by file permissions
        return True
    try:
        return ipaddress.ip_address(client.host).is_loopback
    except ValueError:
        return False
