"""The console's routes in-process: a small app with the real ControlGuard, the console router,
the real SLO router over a fake SLI source, and stand-ins for the supervisor's own endpoints.
Reading is open to loopback only; every action needs a session and its CSRF token; routes
another part of Falcon has not installed are named, never a crash."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from falcon_platform.config.spec import Spec
from falcon_platform.control.console.routes import create_console_router
from falcon_platform.control.guard import ControlGuard
from falcon_platform.control.slo_routes import create_slo_router
from falcon_platform.errors import FalconError
from falcon_platform.observability import names
from falcon_platform.testing import FakeSLISource

TOKEN = "s3cret-admin-token"
MiB = 1024 * 1024


def _app(
    calls: list[tuple[str, str | None]], *, with_incidents: bool = False, with_rollout: bool = False
) -> FastAPI:
    app = FastAPI()
    app.add_middleware(ControlGuard, admin_token=TOKEN, session_prefix="/console/")

    @app.exception_handler(FalconError)
    async def _error(_: Request, exc: FalconError) -> JSONResponse:  # as the control API does
        return JSONResponse({"error": exc.code, "detail": exc.detail}, status_code=exc.http_status)

    @app.get("/status")
    async def status() -> dict[str, Any]:
        return {
            "supervisor": {"pid": 1, "healthy": True, "health": "2/2 workers ready",
                           "uptime_s": 5, "profile": "dev", "url": "http://127.0.0.1:1",
                           "memory_limit_bytes": 512 * MiB, "memory_soft_limit_bytes": 400 * MiB,
                           "memory_enforcement": "watchdog", "releases": {}, "desired": {},
                           "crash_loop": {}, "rolling_restart": None},
            "workers": [
                {"worker": "w1", "pid": 11, "release": "r0", "state": "ready", "rss_bytes": 100 * MiB,
                 "restarts": 0, "uptime_s": 5},
                {"worker": "w2", "pid": 12, "release": "r0", "state": "backoff", "rss_bytes": 450 * MiB,
                 "restarts": 4, "last_exit_reason": "OOMKilled"},
            ],
        }  # fmt: skip

    @app.get("/alerts")
    async def alerts() -> dict[str, Any]:
        return {"evaluated_at": 1.0, "alerts": [
            {"name": "FalconWorkerOOMKilled", "state": "firing", "severity": "critical",
             "active_since": 1.0, "labels": {"worker": "w2"},
             "annotations": {"summary": "w2 was OOM-killed", "runbook_url": "https://x#oom"}}]}  # fmt: skip

    @app.get("/events")
    async def events(limit: int = 1000, kind: str | None = None) -> dict[str, Any]:
        rows = [{"id": i, "ts": float(i), "kind": "worker_ready" if i % 2 else "worker_exited",
                 "worker": "w1", "release": "r0", "details": {"n": i}} for i in range(120)]  # fmt: skip
        rows = [r for r in rows if kind is None or r["kind"] == kind]
        return {"events": rows[-limit:]}

    @app.post("/restart", status_code=202)
    async def restart() -> dict[str, Any]:
        return {"accepted": True}

    if with_rollout:

        @app.get("/rollout")
        async def rollout() -> dict[str, Any]:
            last = {"from_release": "r3", "to_release": "r1", "finished_at": 0.0, "seconds": 4.2,
                    "reason": "debug flag"}  # fmt: skip
            return {"stable": "r1", "last_rollback": last, "rollout": {
                "release": "r2", "from_release": "r1", "phase": "canary", "done": False, "step": 1,
                "steps": [{}, {}], "weight": 25, "canary_workers": 1, "total_workers": 4,
                "canary_share": 0.25, "started_at": 1.0, "analyses": 0, "last_analysis": None}}  # fmt: skip

        @app.get("/releases")
        async def releases() -> dict[str, Any]:
            line = ("running r0 (base); last stable r2 could not be resumed: model sha256 "
                    "aaaaaaaaaaaa then, unreadable now; `falcon rollback --to r2` after fixing "
                    "it, or `falcon deploy`")  # fmt: skip
            return {"stable": "r0", "releases": [], "resume": {"base": "r0", "skipped": "r2",
                    "refused": "model sha256 ...", "line": line}}  # fmt: skip

        @app.post("/rollback")
        async def rollback() -> JSONResponse:
            return JSONResponse(
                {"error": "conflict", "detail": "no earlier good release to roll back to"},
                status_code=409,
            )

    if with_incidents:
        record = {"id": "INC-1", "status": "open", "severity": "P1", "title": "OOM kills",
                  "started_at": 60.0, "detected_at": 90.0, "alerts": ["FalconWorkerOOMKilled"],
                  "triggers": [{"key": "oom_burst", "kind": "oom_burst", "title": "3 OOM kills",
                                "first_ts": 60.0, "last_ts": 80.0, "active": True}]}  # fmt: skip

        @app.get("/incidents")
        async def incidents() -> dict[str, Any]:
            return {"incidents": [record, {**record, "id": "INC-0", "status": "resolved",
                                           "detected_at": 10.0}]}  # fmt: skip

        @app.get("/incidents/{incident_id}")
        async def incident(incident_id: str) -> Any:
            if incident_id != "INC-1":
                return JSONResponse({"error": "not_found", "detail": "no such"}, status_code=404)
            return record

        @app.get("/actions")
        async def actions(incident: str | None = None) -> dict[str, Any]:
            item = {"id": "ACT-7", "incident": "INC-1", "category": "Prevent", "owner": "@sre",
                    "description": "Lower the soft limit", "due": "2026-01-01", "status": "TODO",
                    "overdue": True}  # fmt: skip
            return {"actions": [item] if incident == "INC-1" else [], "today": "2026-02-01"}

        @app.get("/incidents/{incident_id}/postmortem", response_class=PlainTextResponse)
        async def postmortem(incident_id: str) -> str:
            return "# Postmortem\n\n<script>alert(1)</script>\n\n![Memory](memory.png)\n"

    source = FakeSLISource()
    for t in range(0, 601, 10):
        source.add(names.REQUESTS, {"status": "200", "worker": "w1", "release": "r0"}, t, 10.0 * t)
    app.include_router(create_slo_router(Spec(), lambda: source, TOKEN, clock=lambda: 600.0))
    app.include_router(create_console_router(TOKEN, clock=lambda: 600.0))

    @app.middleware("http")
    async def record_calls(request: Any, call_next: Any) -> Any:
        if request.method == "POST" and not request.url.path.startswith("/console/"):
            calls.append((request.url.path, request.headers.get("authorization")))
        return await call_next(request)

    return app


def _client(app: FastAPI, host: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(host, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8001")


async def test_overview_shows_workers_with_words_memory_and_alerts() -> None:
    async with _client(_app([])) as client:
        page = await client.get("/console/")
    assert page.status_code == 200
    html = page.text
    assert 'data-worker="w1"' in html
    assert 'data-worker="w2"' in html
    assert "over soft limit" in html  # w2: 450 MiB over the 400 MiB soft limit, in words
    assert "OOMKilled" in html
    assert "FalconWorkerOOMKilled" in html
    assert "1 of 2" in html  # ready workers
    assert "Incidents: not available in this build" in html  # no /incidents route here
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert "http://" not in re.sub(
        r'(href|action)="[^"]*"|<code>[^<]*</code>', "", html.split("<main")[1]
    )


async def test_every_page_renders_and_absent_apis_are_named() -> None:
    async with _client(_app([], with_incidents=True)) as client:
        for path in ("/console/slos", "/console/alerts", "/console/events", "/console/releases",
                     "/console/incidents", "/console/incidents/INC-1", "/console/login"):  # fmt: skip
            page = await client.get(path)
            assert page.status_code == 200, path
        releases = (await client.get("/console/releases")).text
        incidents = (await client.get("/console/incidents")).text
    assert "The release history: not available in this build" in releases
    assert incidents.index("INC-1") < incidents.index("INC-0")  # newest first
    assert "OOM kills" in incidents


async def test_incident_detail_postmortem_is_escaped_and_links_its_graphs() -> None:
    async with _client(_app([], with_incidents=True)) as client:
        page = (await client.get("/console/incidents/INC-1")).text
        refresh = await client.get("/console/incidents/INC-1", headers={"X-Console-Refresh": "1"})
        missing = (await client.get("/console/incidents/INC-9")).text
        overview = (await client.get("/console/")).text
    assert "3 OOM kills" in page
    assert "Lower the soft limit" in page
    assert "OVERDUE" in page  # in words
    assert "FalconWorkerOOMKilled" in page
    assert "<script>alert(1)</script>" not in page  # raw HTML in the Markdown is escaped
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'src="/console/incidents/INC-1/graphs/memory.png"' in page
    assert "Postmortem" in refresh.text
    assert "graphs/memory.png" not in refresh.text  # a live refresh leaves the postmortem out
    assert "No incident INC-9" in missing
    assert "INC-1" in overview  # open, on the overview
    assert "INC-0" not in overview  # resolved: not


async def test_events_are_filtered_and_paged_newest_first() -> None:
    async with _client(_app([])) as client:
        first = (await client.get("/console/events", params={"kind": "worker_ready"})).text
        second = (
            await client.get("/console/events", params={"kind": "worker_ready", "page": 2})
        ).text
    for bad in ("abc", "-3", "99999999999999999999"):
        async with _client(_app([])) as client:
            odd = await client.get("/console/events", params={"page": bad})
        assert odd.status_code == 200, bad  # a bad page number is page 1 (or the last allowed)
        assert "could not be read" not in odd.text, bad
    ids = [int(n) for n in re.findall(r"n=(\d+)", first)]
    assert ids[:3] == [119, 117, 115]
    assert len(ids) == 50
    assert 'rel="next"' in first
    assert "page=2" in first
    assert [int(n) for n in re.findall(r"n=(\d+)", second)] == list(range(19, 0, -2))
    assert 'rel="next"' not in second
    assert 'rel="prev"' in second


async def test_slo_page_reads_get_slo() -> None:
    async with _client(_app([])) as client:
        slo = (await client.get("/slo")).json()
        page = (await client.get("/console/slos")).text
    assert slo["availability"]["error_ratio"] == 0.0  # 10 req/s, none failed
    assert slo["availability"]["budget_remaining"] == 1.0
    assert "100.0%" in page
    assert "14.4×" in page


async def test_reads_from_another_machine_need_a_session() -> None:
    async with _client(_app([]), host="192.0.2.7") as client:
        page = await client.get("/console/")
        api = await client.get("/slo")
    assert page.status_code == 303
    assert page.headers["location"].startswith("/console/login")
    assert api.status_code == 401


async def test_actions_need_a_session_and_its_csrf_token() -> None:
    calls: list[tuple[str, str | None]] = []
    async with _client(_app(calls)) as client:
        refused = await client.post("/console/actions/restart", data={"csrf": "x"})
        assert refused.status_code == 401
        assert calls == []
        assert (await client.post("/console/actions/nope")).status_code == 404
        wrong = await client.post("/console/login", data={"token": "guess"})
        assert wrong.status_code == 401
        assert "falcon_console" not in client.cookies
        signed = await client.post("/console/login", data={"token": TOKEN, "next": "/console/"})
        assert signed.status_code == 303
        cookie = signed.headers["set-cookie"].lower()
        assert "httponly" in cookie
        assert "samesite=strict" in cookie
        assert TOKEN.lower() not in cookie
        page = (await client.get("/console/")).text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf is not None
        assert "Rolling restart" in page
        stale = await client.post("/console/actions/restart", data={"csrf": "stale"})
        assert stale.status_code == 403
        assert calls == []
        other_site = await client.post(
            "/console/actions/restart",
            data={"csrf": csrf.group(1)},
            headers={"Origin": "http://evil.example"},
        )
        assert other_site.status_code == 403
        assert calls == []
        done = await client.post(
            "/console/actions/restart",
            data={"csrf": csrf.group(1), "back": "https://evil.example/"},
        )
        assert done.status_code == 303
        assert done.headers["location"] == "/console/"
        assert calls == [("/restart", f"Bearer {TOKEN}")]  # the API call carried the token
        after = (await client.get("/console/")).text
        assert "Done: rolling restart (POST /restart answered 202)" in after
        rollback = await client.post("/console/actions/rollback", data={"csrf": csrf.group(1)})
        assert rollback.status_code == 303
        assert (
            "Not available: POST /rollback does not exist" in (await client.get("/console/")).text
        )


async def test_rollout_shown_and_rollback_reports_the_apis_answer() -> None:
    calls: list[tuple[str, str | None]] = []
    async with _client(_app(calls, with_rollout=True)) as client:
        overview = (await client.get("/console/")).text
        releases = (await client.get("/console/releases")).text
        assert (await client.post("/console/actions/rollback")).status_code == 401
        await client.post("/console/login", data={"token": TOKEN})
        signed = (await client.get("/console/releases")).text
        csrf = re.search(r'name="csrf" value="([^"]+)"', signed)
        assert csrf is not None
        done = await client.post(
            "/console/actions/rollback", data={"csrf": csrf.group(1), "back": "/console/releases"}
        )
        after = (await client.get("/console/releases")).text
    assert "r2 step 1 of 2, canary share 25%" in overview
    assert "1 of 4 workers" in releases
    assert (  # why the supervisor runs its base release (issue 14)
        "not resumed</span> running r0 (base); last stable r2 could not be resumed: model "
        "sha256 aaaaaaaaaaaa then, unreadable now; `falcon rollback --to r2`" in releases
    )
    assert "Last rollback: r3 → r1, 1970-01-01 00:00:00Z, took 4.2 s (debug flag)" in releases
    assert "Promote" in signed
    assert "Abort rollout" in signed
    assert done.headers["location"] == "/console/releases"
    assert calls == [("/rollback", f"Bearer {TOKEN}")]
    assert "answered 409: no earlier good release to roll back to" in after


async def test_guard_still_caps_console_bodies_and_guards_the_api() -> None:
    async with _client(_app([])) as client:
        huge = await client.post("/console/login", content=b"x" * (2 * MiB))
        assert huge.status_code == 413
        assert (await client.post("/restart")).status_code == 401  # no Bearer, not the console
        sneaky = await client.post("/console/../restart")
        assert sneaky.status_code in (401, 404)


@pytest.mark.parametrize("name", ["console.css", "console.js"])
async def test_static_files_are_served_from_the_package(name: str) -> None:
    async with _client(_app([])) as client:
        found = await client.get(f"/console/static/{name}")
        missing = await client.get("/console/static/..%2Fviews.py")
    assert found.status_code == 200
    assert len(found.content) > 500
    assert missing.status_code == 404
