"""The supervisor's HTTP client for one worker's private admin socket (/healthz, /metrics)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx


class AdminClient:
    """Talks to one worker over its UNIX socket::

    client = AdminClient(Path(".falcon/run/w1.sock"))
    ok = await client.healthz(timeout=1.0)
    text = await client.metrics(timeout=1.0)
    await client.aclose()
    """

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self._client = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(socket_path)),
            base_url="http://worker",
        )

    async def healthz(self, *, timeout_s: float) -> bool:
        """True when /healthz answers 200 within ``timeout``."""
        try:
            response = await self._client.get("/healthz", timeout=timeout_s)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def readyz(self, *, timeout_s: float) -> bool:
        try:
            response = await self._client.get("/readyz", timeout=timeout_s)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def readyz_body(self, *, timeout_s: float) -> dict[str, Any] | None:
        """The /readyz JSON (store backends and states), whatever its status code."""
        try:
            response = await self._client.get("/readyz", timeout=timeout_s)
            body = response.json()
        except (httpx.HTTPError, ValueError):
            return None
        return body if isinstance(body, dict) else None

    async def metrics(self, *, timeout_s: float) -> str | None:
        """The worker's Prometheus exposition, or None when it did not answer."""
        try:
            response = await self._client.get("/metrics", timeout=timeout_s)
        except httpx.HTTPError:
            return None
        return response.text if response.status_code == 200 else None

    async def aclose(self) -> None:
        await self._client.aclose()
