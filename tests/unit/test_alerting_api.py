"""The alerts router: GET /alerts lists local and external alerts; POST /alerts/webhook journals
Alertmanager webhooks (admin token), once per state change."""

import io
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from falcon_platform.config.spec import Spec
from falcon_platform.control.alerts_routes import create_alerts_router
from falcon_platform.errors import FalconError
from falcon_platform.observability import names
from falcon_platform.observability.evaluator import AlertEvaluator
from falcon_platform.observability.webhook import alertmanager_payload
from falcon_platform.testing import FakeSLISource
from falcon_platform.testing.journal import FakeEventJournal

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _app(evaluator: AlertEvaluator | None, journal: FakeEventJournal) -> FastAPI:
    app = FastAPI()

    @app.exception_handler(FalconError)
    async def _error(_: Request, exc: FalconError) -> JSONResponse:  # as the control API does
        return JSONResponse({"error": exc.code, "detail": exc.detail}, status_code=exc.http_status)

    app.include_router(
        create_alerts_router(lambda: evaluator, journal, TOKEN, clock=lambda: 1000.0)
    )
    return app


def _firing_evaluator() -> AlertEvaluator:
    source = FakeSLISource()
    source.add(names.CRASH_LOOP, {"release": "r2"}, 0, 1)
    evaluator = AlertEvaluator(Spec())
    evaluator.evaluate(source, 1)
    return evaluator


def _am_alert(status: str, **labels: str) -> dict:  # type: ignore[type-arg]
    return {
        "status": status,
        "labels": {"alertname": "FalconHighErrorRate", "severity": "critical", **labels},
        "annotations": {"summary": "errors"},
        "startsAt": "2026-01-01T00:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-01-01T00:05:00Z",
        "fingerprint": "abc123",
    }


def _body(*alerts: dict, version: str = "4") -> dict:  # type: ignore[type-arg]
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    return {"version": version, "status": status, "receiver": "falcon", "alerts": list(alerts)}


@pytest.fixture
def journal() -> FakeEventJournal:
    return FakeEventJournal()


@pytest.fixture
async def local(journal: FakeEventJournal) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(
        app=_app(_firing_evaluator(), journal), client=("127.0.0.1", 5000)
    )
    async with httpx.AsyncClient(transport=transport, base_url="http://control") as client:
        yield client


async def test_get_alerts_lists_the_local_evaluators_alerts_on_loopback(
    local: httpx.AsyncClient,
) -> None:
    body = (await local.get("/alerts")).json()
    assert body["evaluated_at"] == 1
    assert [
        (a["name"], a["state"], a["source"], a["labels"]["release"]) for a in body["alerts"]
    ] == [("FalconCrashLoop", "firing", "local", "r2")]


async def test_get_alerts_from_another_host_needs_the_token(journal: FakeEventJournal) -> None:
    transport = httpx.ASGITransport(app=_app(None, journal), client=("10.1.2.3", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://control") as client:
        assert (await client.get("/alerts")).status_code == 401
        answer = await client.get("/alerts", headers=AUTH)
    assert answer.status_code == 200
    assert answer.json() == {"evaluated_at": None, "alerts": []}


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}]
)
async def test_webhook_without_the_admin_token_is_refused(
    local: httpx.AsyncClient, journal: FakeEventJournal, headers: dict
) -> None:  # type: ignore[type-arg]
    answer = await local.post("/alerts/webhook", json=_body(_am_alert("firing")), headers=headers)
    assert answer.status_code == 401
    assert answer.json()["error"] == "unauthorized"
    assert journal.events == []


async def test_webhook_journals_each_state_change_once(
    local: httpx.AsyncClient, journal: FakeEventJournal
) -> None:
    firing = _body(_am_alert("firing", release="r2", worker="w1"))
    first = await local.post("/alerts/webhook", json=firing, headers=AUTH)
    repeat = await local.post(
        "/alerts/webhook", json=firing, headers=AUTH
    )  # Alertmanager's repeat_interval
    assert (first.status_code, first.json()) == (202, {"received": 1, "journalled": 1})
    assert repeat.json() == {"received": 1, "journalled": 0}
    listed = (await local.get("/alerts")).json()["alerts"]
    assert [(a["name"], a["source"]) for a in listed] == [
        ("FalconCrashLoop", "local"),
        ("FalconHighErrorRate", "alertmanager"),
    ]

    await local.post(
        "/alerts/webhook",
        json=_body(_am_alert("resolved", release="r2", worker="w1")),
        headers=AUTH,
    )
    assert [(e.kind, e.release, e.worker, e.ts) for e in journal.events] == [
        ("alert_firing", "r2", "w1", 1000.0),
        ("alert_resolved", "r2", "w1", 1000.0),
    ]
    assert journal.events[0].details["source"] == "alertmanager"
    assert journal.events[0].details["name"] == "FalconHighErrorRate"
    assert [a["source"] for a in (await local.get("/alerts")).json()["alerts"]] == ["local"]


async def test_webhook_refuses_other_payload_versions_and_shapes(local: httpx.AsyncClient) -> None:
    assert (
        await local.post(
            "/alerts/webhook", json=_body(_am_alert("firing"), version="3"), headers=AUTH
        )
    ).status_code == 422
    assert (
        await local.post("/alerts/webhook", json={"version": "4"}, headers=AUTH)
    ).status_code == 422


async def test_falcons_own_webhook_payload_is_accepted(
    local: httpx.AsyncClient, journal: FakeEventJournal
) -> None:
    """What one Falcon's evaluator sends, another Falcon's control API takes."""
    source = FakeSLISource()
    source.add(names.CRASH_LOOP, {"release": "r9"}, 0, 1)
    transitions = AlertEvaluator(Spec()).evaluate(source, 1)
    answer = await local.post(
        "/alerts/webhook", json=alertmanager_payload(transitions), headers=AUTH
    )
    assert answer.json() == {"received": 1, "journalled": 1}
    assert journal.events[0].release == "r9"


def test_alerts_table_keeps_alert_names_whole_on_a_narrow_terminal() -> None:
    from rich.console import Console

    from falcon_platform.cli.alerts_cli import alerts_table

    alert = _firing_evaluator().firing()[0].to_dict() | {"source": "local"}
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(alerts_table([alert], now=61.0))
    text = console.export_text()
    assert "FalconCrashLoop" in text
    assert "60s" in text  # active since t=1, now 61
    assert "release=r2" in text
