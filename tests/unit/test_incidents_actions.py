"""Action items: categories, due dates, the status table, overdue, the store, the API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import create_engine

from falcon_platform.config.spec import Spec
from falcon_platform.control.incidents_routes import incidents_plugin
from falcon_platform.errors import FalconError, InvalidInputError
from falcon_platform.events.journal import SqlEventJournal
from falcon_platform.incidents.actions import (
    ActionStatus,
    Category,
    advance,
    is_overdue,
    new_action,
    parse_category,
)
from falcon_platform.incidents.model import InvalidTransitionError
from falcon_platform.stores.schema import metadata

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
INC = "INC-2026-11-30-001"


def _item(**kw: str) -> object:
    args = {"incident": INC, "category": "prevent", "description": "x", "owner": "@sre",
            "due": "2026-12-15"} | kw  # fmt: skip
    return new_action(number=1, now=1.0, **args)  # type: ignore[arg-type]


def test_model_rules() -> None:
    item = _item()
    assert item.id == "AI-1"  # type: ignore[attr-defined]
    assert item.category is Category.PREVENT  # type: ignore[attr-defined]
    assert parse_category("long_term") is Category.LONG_TERM
    with pytest.raises(InvalidInputError, match="Prevent, Detect, Respond, Long-term"):
        parse_category("fix")
    with pytest.raises(InvalidInputError, match="YYYY-MM-DD"):
        _item(due="15/12/2026")
    with pytest.raises(InvalidInputError, match="owner"):
        _item(owner=" ")
    # Overdue: past the due day and not DONE; the due day itself is not late.
    assert not is_overdue(item, "2026-12-15")  # type: ignore[arg-type]
    assert is_overdue(item, "2026-12-16")  # type: ignore[arg-type]
    started = advance(item, ActionStatus.IN_PROGRESS, now=2.0)  # type: ignore[arg-type]
    done = advance(started, ActionStatus.DONE, now=3.0)
    assert not is_overdue(done, "2027-01-01")
    with pytest.raises(InvalidTransitionError):
        advance(done, ActionStatus.TODO, now=4.0)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    engine = create_engine(f"sqlite:///{tmp_path / 'falcon.db'}")
    metadata.create_all(engine)
    routers, _, _ = incidents_plugin(Spec(), engine, SqlEventJournal(engine), TOKEN)
    app = FastAPI()

    @app.exception_handler(FalconError)
    async def _error(_: Request, exc: FalconError) -> JSONResponse:
        return JSONResponse({"error": exc.code, "detail": exc.detail}, status_code=exc.http_status)

    for router in routers:
        app.include_router(router)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://control") as c:
        yield c
    engine.dispose()


async def test_actions_over_http(client: httpx.AsyncClient) -> None:
    iid = (await client.post("/incidents", json={"title": "leak"}, headers=AUTH)).json()["id"]
    body = {"incident": iid, "category": "Detect", "description": "alert on growth",
            "owner": "@sre", "due": "2000-01-01"}  # fmt: skip
    first = await client.post("/actions", json=body, headers=AUTH)
    assert first.status_code == 201, first.text
    second = await client.post("/actions", json=body | {"due": "2999-01-01"}, headers=AUTH)
    assert [first.json()["id"], second.json()["id"]] == ["AI-1", "AI-2"]
    late = (await client.get("/actions", params={"overdue": "true"})).json()["actions"]
    assert [a["id"] for a in late] == ["AI-1"]
    assert (await client.post("/actions/AI-1/done", headers=AUTH)).json()["status"] == "DONE"
    assert (await client.get("/actions", params={"overdue": "true"})).json()["actions"] == []
    listed = (await client.get("/actions", params={"incident": iid})).json()["actions"]
    assert [(a["id"], a["status"]) for a in listed] == [("AI-1", "DONE"), ("AI-2", "TODO")]
    # Errors: unknown incident 404, bad category 422, refused step 409, bad id 422.
    missing = await client.post(
        "/actions", json=body | {"incident": "INC-2000-01-01-001"}, headers=AUTH
    )
    assert missing.status_code == 404
    bad = await client.post("/actions", json=body | {"category": "fix"}, headers=AUTH)
    assert bad.status_code == 422
    assert "Long-term" in bad.json()["detail"]
    assert (await client.post("/actions/AI-1/todo", headers=AUTH)).status_code == 409
    assert (await client.post("/actions/nope/done", headers=AUTH)).status_code == 422
    assert (await client.post("/actions/AI-2/explode", headers=AUTH)).status_code == 422
    assert (await client.post("/actions", json=body)).status_code == 401
