"""The control API's front door: the admin token before any body, and bodies capped.

A 500 MB body sent to ``POST /alerts/webhook`` used to be read and parsed before the 401: the
supervisor grew to 1.75 GB and its event loop (probes, the watchdog, restarts) stalled ~5 s.
This pure ASGI middleware runs first, on every call that changes state (POST, PUT, PATCH,
DELETE): no ``Authorization: Bearer <admin token>`` -> 401 without reading a byte of the body;
a declared ``Content-Length`` above the cap -> 413 at once; a body that streams past the cap
-> 413 at the byte that crosses it. What passes is at most ``max_body`` bytes, handed to the
app as one message::

    app.add_middleware(ControlGuard, admin_token=token, max_body=1_048_576)

The web console's forms (``/console/...``) carry no Bearer header: a browser cannot send one
from an HttpOnly session. For ``session_prefix`` the console checks its session cookie and CSRF
token itself (``control/console/sessions.py``); the body cap still applies there.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from falcon_platform.control.auth import bearer_token

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY_BYTES = 1_048_576  # Alertmanager's largest webhook batches are tens of kB
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


async def _error(send: Send, status: int, code: str, detail: str) -> None:
    body = orjson.dumps({"error": code, "detail": detail})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),  # the unread body must not be taken for the next request
    ]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ControlGuard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        admin_token: str,
        max_body: int = MAX_BODY_BYTES,
        session_prefix: str | None = None,
    ) -> None:
        self.app = app
        self.admin_token = admin_token
        self.max_body = max_body
        self.session_prefix = session_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _WRITES:
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        given = bearer_token(headers.get(b"authorization", b"").decode("latin-1"))
        path = str(scope.get("path", ""))
        by_session = (
            self.session_prefix is not None
            and path.startswith(self.session_prefix)
            and ".." not in path
        )
        if not by_session and (
            given is None or not secrets.compare_digest(given, self.admin_token)
        ):
            await _error(
                send,
                401,
                "unauthorized",
                "this call changes state and needs the admin token as 'Authorization: Bearer "
                "<token>': set FALCON_ADMIN_TOKEN or run the CLI as the user who started the "
                "supervisor (token in <run_dir>/admin_token)",
            )
            return
        declared = headers.get(b"content-length")
        too_large = (
            f"the body is larger than {self.max_body} bytes, the control API's limit; "
            "send less (Alertmanager: lower group_limit / max_alerts)"
        )
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                await _error(send, 400, "malformed_request", "Content-Length is not a number")
                return
            if length > self.max_body:
                await _error(send, 413, "payload_too_large", too_large)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await _error(send, 413, "payload_too_large", too_large)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
