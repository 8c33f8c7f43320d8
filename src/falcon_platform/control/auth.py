"""Who may call the control API: the Bearer credential and whether the caller is local.

Reads are open to loopback callers (and the UNIX socket, guarded by file permissions);
anything that changes state needs the admin token (``config.admin_token``)::

    if not is_loopback(request) and bearer_token(request.headers.get("authorization")) != token: ...
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Callable
from typing import Annotated

from fastapi import Header
from starlette.requests import Request

from falcon_platform.errors import UnauthorizedError


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


def token_matches(given: str | None, admin_token: str) -> bool:
    return given is not None and secrets.compare_digest(given, admin_token)


def reader_dependency(admin_token: str) -> Callable[..., None]:
    """A FastAPI dependency for a read-only route: open to loopback, else the admin token."""

    def require_reader(
        request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> None:
        if not is_loopback(request) and not token_matches(bearer_token(authorization), admin_token):
            raise UnauthorizedError(
                "reading the control API from another machine needs the admin token as "
                "'Authorization: Bearer <token>' (token in <run_dir>/admin_token)"
            )

    return require_reader
