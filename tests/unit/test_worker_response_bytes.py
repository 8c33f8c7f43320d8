"""Falcon's guarded protocol writes the same bytes as uvicorn's, for every kind of response.

Both protocol classes are fed the same requests on a recording transport and answered by the
same ASGI app, on a real event loop: the bytes on the wire, and whether the connection is
closed after, must be identical (known length, HEAD, 204, ``Connection: close``, a body in two
messages, a chunked stream whose body is slow, two requests on one kept-alive connection).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from falcon_platform.worker.connections import ConnectionGuard, ConnectionLimits

BODY = b'{"prediction":"positive"}'


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    if scope["path"] == "/stream":  # chunked, the body slow to come
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": b"one", "more_body": True})
        await send({"type": "http.response.body", "body": b"two", "more_body": False})
        return
    if scope["path"] == "/empty":
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body"})
        return
    if scope["path"] == "/parts":  # known length, two body messages
        headers = [(b"content-length", b"%d" % (2 * len(BODY)))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": BODY, "more_body": True})
        await send({"type": "http.response.body", "body": BODY})
        return
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5555), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def write(self, data: Any) -> None:
        assert not self.closed, "written after close"
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def request(method: str, path: str, *extra: bytes) -> bytes:
    body = b"" if method in ("GET", "HEAD") else b'{"text": "great"}'
    length = b"Content-Length: %d\r\n" % len(body) if body else b""
    return b"%s %s HTTP/1.1\r\nHost: x\r\n%s%s\r\n%s" % (
        method.encode(),
        path.encode(),
        length,
        b"".join(extra),
        body,
    )


async def exchange(cls: type[asyncio.Protocol], data: bytes) -> RecordingTransport:
    config = uvicorn.Config(app, http=cls, ws="none", log_config=None, access_log=False)
    config.load()
    protocol: Any = cls(config=config, server_state=ServerState(), app_state={})  # type: ignore[call-arg]
    transport = RecordingTransport()
    protocol.connection_made(transport)
    protocol.data_received(data)
    for _ in range(50):
        await asyncio.sleep(0.01)
        if not protocol.tasks and not protocol.pipeline:
            break
    protocol.connection_lost(None)
    return transport


CASES = {
    "known length": request("POST", "/infer"),
    "HEAD": request("HEAD", "/infer"),
    "204": request("GET", "/empty"),
    "Connection: close": request("POST", "/infer", b"Connection: close\r\n"),
    "two body messages": request("GET", "/parts"),
    "chunked, slow body": request("GET", "/stream"),
    "keep-alive pair": request("POST", "/infer") + request("HEAD", "/infer"),
}


@pytest.mark.parametrize("case", CASES)
def test_same_bytes_as_uvicorn(case: str) -> None:
    guarded = ConnectionGuard(ConnectionLimits()).protocol_class()
    theirs = asyncio.run(exchange(HttpToolsProtocol, CASES[case]))
    ours = asyncio.run(exchange(guarded, CASES[case]))
    assert b"".join(ours.writes) == b"".join(theirs.writes)
    assert b"".join(ours.writes).startswith(b"HTTP/1.1 ")
    assert ours.closed == theirs.closed
    if case == "Connection: close":
        assert ours.closed
        assert b"connection: close" in ours.writes[0]


def test_a_chunked_head_is_written_before_its_slow_body() -> None:
    guarded = ConnectionGuard(ConnectionLimits()).protocol_class()
    ours = asyncio.run(exchange(guarded, request("GET", "/stream")))
    assert ours.writes[0].endswith(b"transfer-encoding: chunked\r\n\r\n")
    assert ours.writes[1:] == [b"3\r\none\r\n", b"3\r\ntwo\r\n0\r\n\r\n"]
