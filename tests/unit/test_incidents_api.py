"""The incidents router: reads open on loopback, writes need the token, errors are clear
(404 unknown id, 422 bad id/body/action, 409 refused transition), never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import create_engine

from falcon_platform.config.spec import Spec
from falcon_platform.control.incidents_routes import incidents_plugin
from falcon_platform.errors import FalconError
from falcon_platform.events.journal import SqlEventJournal
from falcon_platform.stores.schema import metadata

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _app(routers: list[APIRouter]) -> FastAPI:
    app = FastAPI()

    @app.exception_handler(FalconError)
    async def _error(_: Request, exc: FalconError) -> JSONResponse:  # as the control API does
        return JSONResponse({"error": exc.code, "detail": exc.detail}, status_code=exc.http_status)

    for router in routers:
        app.include_router(router)
    return app


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    engine = create_engine(f"sqlite:///{tmp_path / 'falcon.db'}")
    metadata.create_all(engine)
    routers, tasks, _ = incidents_plugin(Spec(), engine, SqlEventJournal(engine), TOKEN)
    assert [t.name for t in tasks] == ["incidents"]
    transport = httpx.ASGITransport(app=_app(routers), client=("127.0.0.1", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://control") as c:
        yield c
    engine.dispose()


async def test_open_ack_note_mitigate_resolve_over_http(client: httpx.AsyncClient) -> None:
    opened = await client.post(
        "/incidents", json={"title": "p99 doubled", "severity": "P3", "by": "alice"}, headers=AUTH
    )
    assert opened.status_code == 201
    inc = opened.json()
    iid = inc["id"]
    assert (inc["status"], inc["severity"], inc["opened_by"]) == ("open", "P3", "alice")
    for action, body in [
        ("ack", {"by": "bob"}),
        ("note", {"by": "bob", "text": "r3 suspected"}),
        ("mitigate", {"by": "bob"}),
        ("severity", {"by": "bob", "severity": "P2"}),
        ("resolve", {"by": "alice", "text": "rolled back"}),
    ]:
        answer = await client.post(f"/incidents/{iid}/{action}", json=body, headers=AUTH)
        assert answer.status_code == 200, (action, answer.text)
    final = (await client.get(f"/incidents/{iid}")).json()
    assert final["status"] == "resolved"
    assert final["severity"] == "P2"
    assert final["commander"] == "bob"
    assert final["notes"][0]["text"] == "r3 suspected"
    listed = (await client.get("/incidents", params={"status": "resolved"})).json()["incidents"]
    assert [i["id"] for i in listed] == [iid]
    assert (await client.get("/incidents", params={"status": "open"})).json()["incidents"] == []


async def test_postmortem_of_an_open_incident_without_traffic(client: httpx.AsyncClient) -> None:
    """An incident still open, no request in the log: the draft renders (window up to now)."""
    iid = (await client.post("/incidents", json={"title": "odd"}, headers=AUTH)).json()["id"]
    answer = await client.get(f"/incidents/{iid}/postmortem")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/markdown")
    assert "**The incident is still open**" in answer.text
    assert f"| **Incident ID** | {iid} |" in answer.text
    assert "| **Requests Affected** | 0 failed of 0" in answer.text
    bundle = (await client.get(f"/incidents/{iid}/bundle")).json()
    assert bundle["window"]["ongoing"] is True
    assert bundle["impact"]["requests"] == 0
    assert (await client.get("/incidents/INC-2000-01-01-001/bundle")).status_code == 404


async def test_errors_are_clear(client: httpx.AsyncClient) -> None:
    assert (await client.post("/incidents", json={"title": "x"})).status_code == 401
    missing = await client.get("/incidents/INC-2026-01-01-001")
    assert missing.status_code == 404
    assert "falcon incident list" in missing.json()["detail"]
    bad_id = await client.get("/incidents/not-an-id")
    assert bad_id.status_code == 422
    assert "INC-" in bad_id.json()["detail"]
    assert (await client.post("/incidents", json={"title": ""}, headers=AUTH)).status_code == 422
    bad_sev = await client.post("/incidents", json={"title": "x", "severity": "P9"}, headers=AUTH)
    assert bad_sev.status_code == 422
    iid = (await client.post("/incidents", json={"title": "x"}, headers=AUTH)).json()["id"]
    unknown = await client.post(f"/incidents/{iid}/explode", headers=AUTH)
    assert unknown.status_code == 422
    assert "ack, note, mitigate or resolve" in unknown.json()["detail"]
    assert (await client.post(f"/incidents/{iid}/resolve", headers=AUTH)).status_code == 200
    again = await client.post(f"/incidents/{iid}/mitigate", headers=AUTH)
    assert again.status_code == 409
    assert "resolved" in again.json()["detail"]
    empty_note = await client.post(f"/incidents/{iid}/note", json={"text": " "}, headers=AUTH)
    assert empty_note.status_code == 422


async def test_reads_from_another_host_need_the_token(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'f.db'}")
    metadata.create_all(engine)
    routers, _, _ = incidents_plugin(Spec(), engine, SqlEventJournal(engine), TOKEN)
    transport = httpx.ASGITransport(app=_app(routers), client=("10.0.0.9", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://control") as c:
        assert (await c.get("/incidents")).status_code == 401
        assert (await c.get("/incidents", headers=AUTH)).status_code == 200
    engine.dispose()
