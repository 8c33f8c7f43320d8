"""The console reads and acts through the control API itself, in-process.

Each page calls the same endpoints a script calls (``GET /status``, ``/alerts``, ``/events``,
``POST /rollback``...) over httpx's ASGI transport: no second source of truth, and an action
from the console passes the same checks, gates and journal entries as one from the CLI::

    api = ApiReader(request.app, admin_token)
    answer = await api.get("/status")            # Answer(status=200, body={...})
    answer = await api.post("/rollback")          # with the admin token as Bearer
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

# Some routes (alert evaluation over days, a readyz probe of a worker) take a while on a busy
# machine; a page must still render, saying what did not answer.
TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Answer:
    status: int  # 0: the call itself failed (timeout)
    body: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def absent(self) -> bool:
        """The route does not exist in this build (another part of Falcon not installed yet)."""
        # FastAPI's own answer for an unknown path; Falcon's not-found errors carry "error".
        return self.status == 405 or (self.status == 404 and self.body == {"detail": "Not Found"})

    @property
    def detail(self) -> str:
        if isinstance(self.body, dict):
            return str(self.body.get("detail") or self.body.get("error") or self.body)
        return str(self.body)[:300]


class ApiReader:
    def __init__(self, app: Any, admin_token: str) -> None:
        # The ASGI transport presents the call as from 127.0.0.1: the console checks who the
        # viewer is itself (routes.py) before it reads on their behalf.
        self._client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://falcon-console.internal",
            timeout=TIMEOUT_S,
        )
        self._token = admin_token

    async def get(self, path: str, params: Any = None) -> Answer:
        return await self._call("GET", path, params=params)

    async def post(self, path: str, json: Any = None) -> Answer:
        return await self._call(
            "POST", path, json=json, headers={"Authorization": f"Bearer {self._token}"}
        )

    async def _call(self, method: str, path: str, **kwargs: Any) -> Answer:
        try:
            response = await self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            return Answer(0, {"error": "unavailable", "detail": f"{method} {path}: {exc!r}"})
        try:
            body = response.json()
        except ValueError:
            body = response.text
        return Answer(response.status_code, body)

    async def aclose(self) -> None:
        await self._client.aclose()
