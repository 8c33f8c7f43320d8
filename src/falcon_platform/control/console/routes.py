"""The web console's routes: pages under ``/console/``, sign-in, actions, two static files.

Pages are rendered on the server (Jinja2) from the control API's own JSON (``ApiReader``);
``console.js`` re-fetches the page every few seconds and swaps its ``data-live`` sections,
so the page updates without a reload and still works, unrefreshed, without JavaScript::

    router = create_console_router(admin_token)
    app = create_control_app(..., extra_routers=[router])    # GET /console/
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from falcon_platform.control.auth import is_loopback
from falcon_platform.control.console import views
from falcon_platform.control.console.api_reader import Answer, ApiReader
from falcon_platform.control.console.sessions import (
    COOKIE,
    SESSION_TTL_S,
    Session,
    SessionStore,
    same_origin,
)
from falcon_platform.events.journal import EventKind

PREFIX = "/console"
REFRESH_MS = 2000
STATIC = {"console.css": "text/css", "console.js": "text/javascript"}
NAV = [
    ("overview", f"{PREFIX}/", "Overview"),
    ("releases", f"{PREFIX}/releases", "Releases"),
    ("slos", f"{PREFIX}/slos", "SLOs"),
    ("alerts", f"{PREFIX}/alerts", "Alerts"),
    ("incidents", f"{PREFIX}/incidents", "Incidents"),
    ("events", f"{PREFIX}/events", "Events"),
]
#: action name -> (control API path, with {target} for an incident id; what it does)
ACTIONS: dict[str, tuple[str, str]] = {
    "restart": ("/restart", "rolling restart"),
    "promote": ("/rollout/promote", "promote the canary"),
    "abort": ("/rollout/abort", "abort the rollout"),
    "rollback": ("/rollback", "roll back"),
    "incident-ack": ("/incidents/{target}/ack", "acknowledge the incident"),
    "incident-mitigate": ("/incidents/{target}/mitigate", "mark the incident mitigated"),
    "incident-resolve": ("/incidents/{target}/resolve", "resolve the incident"),
    "item-start": ("/actions/{target}/start", "start the action item"),
    "item-done": ("/actions/{target}/done", "mark the action item done"),
}
# Only the admin token, a session and the page structure are security-relevant here; the CSP
# keeps every byte the page loads on this server (the console works with no internet access).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # "no-referrer" makes Chromium send Origin: null
    "Cache-Control": "no-store",
}
MAX_TARGET_CHARS = 200
GRAPH_CACHE_S = 60.0


def _safe_back(value: str | None) -> str:
    """Where to return after a form: a console path only (no open redirect)."""
    if value and value.startswith(f"{PREFIX}/") and "//" not in value and "\\" not in value:
        return value
    return f"{PREFIX}/"


def _form(body: bytes) -> dict[str, str]:
    # Three small urlencoded fields: the stdlib parser, not a multipart dependency.
    parsed = parse_qs(body.decode("utf-8", errors="replace"), max_num_fields=10)
    return {k: v[0] for k, v in parsed.items() if v}


def create_console_router(
    admin_token: str,
    *,
    clock: Callable[[], float] = time.time,
    refresh_ms: int = REFRESH_MS,
) -> APIRouter:
    router = APIRouter(prefix=PREFIX, include_in_schema=False)
    sessions = SessionStore(admin_token, clock=clock)
    env = Environment(
        loader=PackageLoader("falcon_platform.control.console", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        bytes=views.format_bytes,
        seconds=views.format_seconds,
        time=views.format_time,
        percent=views.format_percent,
        details=views.details_text,
    )
    readers: dict[int, ApiReader] = {}
    graphs: dict[str, tuple[float, dict[str, bytes]]] = {}  # incident id -> (when, graphs)
    graph_lock = asyncio.Lock()

    def api(request: Request) -> ApiReader:
        app = request.app
        if id(app) not in readers:
            readers[id(app)] = ApiReader(app, admin_token)
        return readers[id(app)]

    def session_of(request: Request) -> Session | None:
        return sessions.get(request.cookies.get(COOKIE))

    def render(
        request: Request,
        template: str,
        page: str,
        context: Mapping[str, Any],
        *,
        status_code: int = 200,
    ) -> HTMLResponse:
        session = session_of(request)
        flash = list(session.flash) if session else []
        if session:
            session.flash.clear()
        html = env.get_template(template).render(
            nav=NAV,
            page=page,
            prefix=PREFIX,
            session=session,
            flash=flash,
            refresh_ms=refresh_ms,
            now=clock(),
            path=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
            actions=ACTIONS,
            **context,
        )
        return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)

    def refuse(request: Request, status_code: int, title: str, detail: str) -> HTMLResponse:
        return render(
            request,
            "refused.html.j2",
            "",
            {"title": title, "detail": detail},
            status_code=status_code,
        )

    def viewer_refused(request: Request) -> Response | None:
        """Reads are open on loopback (like the API's); from elsewhere, a session is needed."""
        if is_loopback(request) or session_of(request) is not None:
            return None
        target = quote(request.url.path, safe="/")
        return RedirectResponse(f"{PREFIX}/login?next={target}", status_code=303)

    # ------------------------------------------------------------------ static files
    @router.get("/static/{name}")
    async def static(name: str) -> Response:
        if name not in STATIC:
            return Response("not found", status_code=404, media_type="text/plain")
        data = resources.files("falcon_platform.control.console").joinpath("static", name)
        return Response(
            data.read_bytes(),
            media_type=STATIC[name],
            headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"},
        )

    # ------------------------------------------------------------------ pages
    @router.get("")
    async def root() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/", status_code=307)

    @router.get("/")
    async def overview(request: Request) -> Response:
        if (refused := viewer_refused(request)) is not None:
            return refused
        reader = api(request)
        status = await reader.get("/status")
        alerts = await reader.get("/alerts")
        traffic = await reader.get("/traffic", {"span": 3600, "step": 60})
        incidents = await reader.get("/incidents")
        rollout = await reader.get("/rollout")
        charts = []
        if traffic.ok:
            t = traffic.body
            for key, title, unit, scale in (
                ("rps", "Request rate", "req/s", 1.0),
                ("error_ratio", "Error ratio", "%", 100.0),
                ("p99_ms", "p99 latency", "ms", 1.0),
            ):
                values = t.get(key, [])
                last = views.latest_value(values)
                charts.append(
                    {
                        "key": key,
                        "title": title,
                        "unit": unit,
                        "runs": views.sparkline(values),
                        "latest": None if last is None else last * scale,
                        "points": sum(1 for v in values if v is not None),
                    }
                )
        firing = []
        if alerts.ok:
            firing = views.alert_rows(alerts.body.get("alerts", []), clock())
        return render(
            request,
            "overview.html.j2",
            "overview",
            {
                "status": status,
                "workers": views.worker_rows(status.body) if status.ok else [],
                "alerts": alerts,
                "alert_rows": firing,
                "traffic": traffic,
                "charts": charts,
                "incidents": incidents,
                "open_incidents": _open_incidents(incidents),
                "rollout": rollout,
                "ro": views.rollout_view(rollout.body) if rollout.ok else None,
            },
        )

    @router.get("/slos")
    async def slos(request: Request) -> Response:
        if (refused := viewer_refused(request)) is not None:
            return refused
        return render(request, "slos.html.j2", "slos", {"slo": await api(request).get("/slo")})

    @router.get("/alerts")
    async def alerts_page(request: Request) -> Response:
        if (refused := viewer_refused(request)) is not None:
            return refused
        alerts = await api(request).get("/alerts")
        rows = views.alert_rows(alerts.body.get("alerts", []), clock()) if alerts.ok else []
        return render(request, "alerts.html.j2", "alerts", {"alerts": alerts, "rows": rows})

    @router.get("/events")
    async def events_page(
        request: Request,
        kind: str = "",
        worker: str = "",
        release: str = "",
        page: str = "1",
    ) -> Response:
        if (refused := viewer_refused(request)) is not None:
            return refused
        number = max(1, min(int(page), 1999)) if page.strip().isdigit() else 1  # API: limit <= 100k
        params: dict[str, Any] = {"limit": views.EventsPage.limit_for(number)}
        filters = {"kind": kind.strip(), "worker": worker.strip(), "release": release.strip()}
        params.update({k: v for k, v in filters.items() if v})
        answer = await api(request).get("/events", params)
        found = views.events_page(answer.body.get("events", []) if answer.ok else [], number)
        known = {str(k) for k in EventKind} | {str(e.get("kind")) for e in found.events}
        query = "&".join(f"{k}={quote(v)}" for k, v in filters.items() if v)
        return render(
            request,
            "events.html.j2",
            "events",
            {
                "answer": answer,
                "found": found,
                "filters": filters,
                "kinds": sorted(known | ({filters["kind"]} if filters["kind"] else set())),
                "query": query,
            },
        )

    @router.get("/releases")
    async def releases_page(request: Request) -> Response:
        if (refused := viewer_refused(request)) is not None:
            return refused
        reader = api(request)
        releases = await reader.get("/releases")
        rollout = await reader.get("/rollout")
        return render(
            request,
            "releases.html.j2",
            "releases",
            {
                "releases": releases,
                "release_rows": views.release_rows(releases.body)
                if releases.ok and isinstance(releases.body, dict)
                else [],
                "rollout": rollout,
                "ro": views.rollout_view(rollout.body) if rollout.ok else None,
                "status": await reader.get("/status"),
            },
        )

    @router.get("/incidents")
    async def incidents_page(request: Request) -> Response:
        if (refused := viewer_refused(request)) is not None:
            return refused
        incidents = await api(request).get("/incidents")
        return render(
            request,
            "incidents.html.j2",
            "incidents",
            {
                "incidents": incidents,
                "rows": views.incident_rows(incidents.body) if incidents.ok else [],
            },
        )

    @router.get("/incidents/{incident_id}")
    async def incident_page(request: Request, incident_id: str) -> Response:
        if (refused := viewer_refused(request)) is not None:
            return refused
        if len(incident_id) > MAX_TARGET_CHARS:
            return refuse(request, 400, "Bad incident id", "An incident id is a short name.")
        reader = api(request)
        path = f"/incidents/{quote(incident_id, safe='')}"
        incident = await reader.get(path)
        items = await reader.get("/actions", {"incident": incident_id})
        html = None
        # The postmortem is not a live section: a refresh (console.js) does not redraw it.
        refresh = request.headers.get("x-console-refresh") == "1"
        postmortem = Answer(0, "") if refresh else await reader.get(f"{path}/postmortem")
        if postmortem.ok and isinstance(postmortem.body, str):
            base = f"{PREFIX}/incidents/{quote(incident_id, safe='')}/graphs/"
            html = views.postmortem_html(postmortem.body, base)
        record = incident.body if incident.ok and isinstance(incident.body, dict) else {}
        return render(
            request,
            "incident.html.j2",
            "incidents",
            {
                "incident_id": incident_id,
                "incident": incident,
                "record": record,
                "facts": views.incident_facts(record) if record else [],
                "items": items,
                "postmortem": postmortem,
                # markdown-it with raw HTML off: its output escapes every input text
                "postmortem_html": Markup(html) if html is not None else None,  # noqa: S704
            },
        )

    @router.get("/incidents/{incident_id}/graphs/{name}")
    async def incident_graph(request: Request, incident_id: str, name: str) -> Response:
        """A postmortem graph (PNG), drawn from ``GET /incidents/{id}/bundle`` like the CLI's."""
        if (refused := viewer_refused(request)) is not None:
            return refused
        if len(incident_id) > MAX_TARGET_CHARS or not name.endswith(".png"):
            return Response("not found", status_code=404, media_type="text/plain")
        # One drawing at a time (a page asks for all its graphs at once): the others wait for it
        # and take the result, instead of each running matplotlib on the supervisor's CPU.
        async with graph_lock:
            now = clock()
            cached = graphs.get(incident_id)
            if cached is None or now - cached[0] > GRAPH_CACHE_S:
                path = f"/incidents/{quote(incident_id, safe='')}/bundle"
                bundle = await api(request).get(path)
                if not bundle.ok or not isinstance(bundle.body, dict):
                    return Response("no such incident", status_code=404, media_type="text/plain")
                from falcon_platform.incidents.graphs import render_graphs

                # matplotlib takes ~1 s: off the supervisor's loop, and kept for a minute
                cached = (now, await asyncio.to_thread(render_graphs, bundle.body))
                graphs[incident_id] = cached
                while len(graphs) > 8:
                    graphs.pop(next(iter(graphs)))
        # the Markdown names the files as the CLI writes them: "<incident id>-<graph>.png"
        data = cached[1].get(name.removeprefix(f"{incident_id}-"))
        if data is None:
            return Response("no such graph", status_code=404, media_type="text/plain")
        return Response(data, media_type="image/png", headers={"Cache-Control": "max-age=60"})

    # ------------------------------------------------------------------ sign-in
    @router.get("/login")
    async def login_form(request: Request, next: str = "") -> Response:
        return render(request, "login.html.j2", "", {"next": _safe_back(next), "error": None})

    @router.post("/login")
    async def login(request: Request) -> Response:
        if not same_origin(request.headers.get("origin"), request.headers.get("host")):
            return refuse(request, 403, "Refused", "The sign-in form was sent from another site.")
        form = _form(await request.body())
        back = _safe_back(form.get("next"))
        session = sessions.sign_in(form.get("token", ""))
        if session is None:
            return render(
                request,
                "login.html.j2",
                "",
                {
                    "next": back,
                    "error": "That is not the admin token. It is in <run_dir>/admin_token "
                    "(falcon up prints where) or FALCON_ADMIN_TOKEN.",
                },
                status_code=401,
            )
        session.flash.append(("good", "Signed in: actions are enabled."))
        response = RedirectResponse(back, status_code=303)
        response.set_cookie(
            COOKIE,
            session.id,
            max_age=int(SESSION_TTL_S),
            path=PREFIX,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        session = session_of(request)
        form = _form(await request.body())
        if session is not None and sessions.check_csrf(session, form.get("csrf")):
            sessions.sign_out(session.id)
        response = RedirectResponse(f"{PREFIX}/", status_code=303)
        response.delete_cookie(COOKIE, path=PREFIX)
        return response

    # ------------------------------------------------------------------ actions
    @router.post("/actions/{action}")
    async def act(request: Request, action: str) -> Response:
        if action not in ACTIONS:
            return refuse(request, 404, "No such action", f"The console has no action {action!r}.")
        if not same_origin(request.headers.get("origin"), request.headers.get("host")):
            return refuse(request, 403, "Refused", "The form was sent from another site.")
        session = session_of(request)
        if session is None:
            return refuse(
                request,
                401,
                "Sign in to act",
                "Changing anything needs the admin token: sign in first "
                "(the token is in <run_dir>/admin_token or FALCON_ADMIN_TOKEN).",
            )
        form = _form(await request.body())
        if not sessions.check_csrf(session, form.get("csrf")):
            return refuse(
                request,
                403,
                "Refused",
                "The form's CSRF token is missing or stale: reload the page.",
            )
        path, what = ACTIONS[action]
        if "{target}" in path:
            target = form.get("target", "")
            if not target or len(target) > MAX_TARGET_CHARS:
                return refuse(request, 400, "Bad request", f"{what} needs the incident id.")
            path = path.replace("{target}", quote(target, safe=""))
        body: dict[str, str] | None = None
        if path.startswith(("/incidents/", "/actions/")):
            body = {"by": "console"}
        elif path.startswith(("/rollout/", "/rollback")):
            body = {"reason": "from the web console"}
        answer = await api(request).post(path, body)
        session.flash.append(_outcome(what, path, answer))
        return RedirectResponse(_safe_back(form.get("back")), status_code=303)

    return router


def _outcome(what: str, path: str, answer: Answer) -> tuple[str, str]:
    if answer.ok:
        return ("good", f"Done: {what} (POST {path} answered {answer.status}).")
    if answer.absent:
        return ("bad", f"Not available: POST {path} does not exist in this build.")
    if answer.status == 0:
        return (
            "bad",
            f"No answer yet: {what} (POST {path}) may still be running; follow it on the "
            "Releases and Events pages.",
        )
    return ("bad", f"Refused: {what} (POST {path} answered {answer.status}: {answer.detail}).")


def _open_incidents(answer: Answer) -> list[dict[str, Any]]:
    if not answer.ok:
        return []
    return [i for i in views.incident_rows(answer.body) if i["status"] != "resolved"]
