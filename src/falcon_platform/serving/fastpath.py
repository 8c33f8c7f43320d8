"""The lean raw-ASGI path in front of FastAPI for the hot inference routes.

FastAPI's request/route machinery costs ~4 times a bare ASGI function (DESIGN.md:
~9.9k vs ~43k requests/s for a constant answer), more than the whole model on
a batch. So ``POST /infer``, ``POST /infer/batch`` and ``POST /v2/models/{name}/infer``
are answered here, by the same :class:`InferenceService` the FastAPI routes
call — identical rules and bodies; the routes stay declared in FastAPI so they
are in the OpenAPI document and serve when the fast path is off
(``FALCON_FAST_PATH=false``). Every other request passes through to FastAPI,
with a server request id (``request_id`` in error bodies) and the client's ``X-Request-ID``
checked (400 if it breaks the rule) and echoed, or the server's id when none was sent.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from falcon_platform.errors import FalconError
from falcon_platform.serving.errors import (
    REQUEST_ID_KEY,
    RawResponse,
    client_request_id,
    error_response,
    new_request_id,
)
from falcon_platform.serving.inference import BATCH, INFER, V2_INFER, InferenceService

_V2_INFER_RE = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?/infer")
_FAST = {"/infer": INFER, "/infer/batch": BATCH}


async def send_raw(send: Send, resp: RawResponse) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": resp.status,
            "headers": [
                (b"content-type", resp.content_type),
                (b"content-length", str(len(resp.body)).encode()),
                *resp.headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": resp.body})


def match_v2_infer(path: str) -> tuple[str, str | None] | None:
    """``/v2/models/m/infer`` → ("m", None); ``/v2/models/m/versions/3/infer`` → ("m", "3")."""
    match = _V2_INFER_RE.fullmatch(path)
    return (match[1], match[2]) if match else None


class FastPath:
    """Answer inference POSTs directly; hand the rest to ``app`` with a request id.

    ``FalconAPI.__call__`` (``serving.app``) calls this first, in front of FastAPI's
    own per-request layers (telemetry, body limit, error middleware), which cost
    more per request than everything Falcon itself does.
    """

    def __init__(self, service: InferenceService, *, enabled: bool = True) -> None:
        self.service = service
        self.enabled = enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send, app: ASGIApp) -> None:
        inference = False
        if scope["method"] == "POST":
            path = scope["path"]
            endpoint = _FAST.get(path)
            v2 = match_v2_infer(path) if endpoint is None and path.startswith("/v2/") else None
            inference = endpoint is not None or v2 is not None
            if inference and self.enabled:
                if endpoint is not None:
                    resp = await self.service.handle(endpoint, scope, receive)
                else:
                    assert v2 is not None
                    resp = await self.service.handle(
                        V2_INFER, scope, receive, model_name=v2[0], model_version=v2[1]
                    )
                if resp is not None:
                    await send_raw(send, resp)
                return
        request_id = new_request_id()
        try:  # inference routes check it in InferenceService.handle, which logs the 400
            sent = None if inference else client_request_id(scope["headers"])
        except FalconError as exc:  # a bad X-Request-ID is refused on every route
            resp = error_response(exc, request_id)
            resp.headers.append((b"x-request-id", request_id.encode()))
            await send_raw(send, resp)
            return
        scope[REQUEST_ID_KEY] = request_id
        id_header = (b"x-request-id", (sent or request_id).encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"x-request-id" for name, _ in headers):
                    headers.append(id_header)
                message = {**message, "headers": headers}
            await send(message)

        await app(scope, receive, send_with_id)
