"""The ceiling: a bare ASGI function answering POST /infer with a constant JSON body.

    taskset -c 0 uvicorn bench.bare_asgi:app --port 8090 --no-access-log --loop uvloop --http httptools

It reads the body (as any real endpoint must) and sends a fixed answer; nothing
a Python server does per request can cost less, so Falcon's throughput is
reported as a ratio of this, measured in the same run.
"""

from __future__ import annotations

from typing import Any

_BODY = (
    b'{"prediction":"positive","confidence":0.9,"probabilities":'
    b'{"negative":0.05,"neutral":0.05,"positive":0.9}}'
)
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(_BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _BODY})
