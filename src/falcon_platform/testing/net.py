"""Loopback helpers for tests and benchmarks: free ports, waiting for a server."""

from __future__ import annotations

import socket
import time

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_http(
    url: str,
    *,
    timeout: float = 60.0,
    expect: int = 200,
    transport: httpx.HTTPTransport | None = None,
) -> None:
    """Poll ``url`` until it answers ``expect``; raise TimeoutError saying what was last seen."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    with httpx.Client(timeout=2.0, transport=transport) as client:
        while time.monotonic() < deadline:
            try:
                response = client.get(url)
                if response.status_code == expect:
                    return
                last = f"HTTP {response.status_code}: {response.text[:200]}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer {expect} within {timeout}s (last: {last})")
