"""CPU per request of the HTTP layer alone: uvicorn's httptools protocol vs Falcon's subclass.

    .venv/bin/python bench/protocol_cost.py            # ~10 s; pin it: taskset -c 1 ...

No sockets, no model: 64 protocol instances on fake transports are fed the same keep-alive
``POST /infer`` bytes and answered by a constant ASGI app, alternating the two classes in the
same process, 7 rounds each; CPU time (``process_time``) per request, so other processes on a
shared machine move the numbers less than wall time would. Prints both medians and the ratio.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import uvicorn
import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from falcon_platform.worker.connections import ConnectionGuard, ConnectionLimits

BODY = b'{"prediction":"positive"}'
TEXT = b'{"text": "great screen but the battery died"}'
REQUEST = (
    b"POST /infer HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\nUser-Agent: wrk\r\n\r\n%s" % (len(TEXT), TEXT)
)


async def app(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5555), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def write(self, data: Any) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def per_request_us(cls: type[asyncio.Protocol], rounds: int = 300) -> float:
    config = uvicorn.Config(app, http=cls, ws="none", log_config=None, access_log=False)
    config.load()
    state = ServerState()
    protocols: list[Any] = []
    for _ in range(64):
        protocol: Any = cls(config=config, server_state=state, app_state={})  # type: ignore[call-arg]
        protocol.connection_made(FakeTransport())
        protocols.append(protocol)
    started = time.process_time()
    for _ in range(rounds):
        for protocol in protocols:
            protocol.data_received(REQUEST)
        for _ in range(3):  # the app's task: start, receive, send
            await asyncio.sleep(0)
    return (time.process_time() - started) / (rounds * len(protocols)) * 1e6


async def main() -> None:
    falcon = ConnectionGuard(ConnectionLimits()).protocol_class()
    runs: dict[str, list[float]] = {"uvicorn httptools": [], "falcon guarded": []}
    for _ in range(7):
        runs["uvicorn httptools"].append(await per_request_us(HttpToolsProtocol))
        runs["falcon guarded"].append(await per_request_us(falcon))
    base = statistics.median(runs["uvicorn httptools"])
    for name, values in runs.items():
        median = statistics.median(values)
        print(f"{name:<18} {median:6.2f} us/request CPU (min {min(values):.2f})  "
              f"ratio {median / base:.3f}")  # fmt: skip


if __name__ == "__main__":
    uvloop.run(main())
