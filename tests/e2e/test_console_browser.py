"""The web console in a real browser (Debian's Chromium driven by Playwright) against a real
``falcon up`` under light load: pages load without console errors and fetch nothing from
outside, the page updates without a reload when a worker is killed, reading is open but an
action needs the admin token, and the basics of accessibility hold.

Screenshots of every page go to ``$FALCON_TEST_ARTIFACTS/console`` (else a pytest temporary
directory, printed); ``docs/images/console-*.png`` are copies of them.
"""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from falcon_platform.config.settings import Settings
from falcon_platform.testing.supervisor import (
    LoadGenerator,
    RunningSupervisor,
    start_supervisor,
    train_model,
)

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
PAGES = ["overview", "releases", "slos", "alerts", "incidents", "events"]
PATHS = {p: "/console/" if p == "overview" else f"/console/{p}" for p in PAGES}
SPEC = """
restart:
  initial_backoff: 0.5s
  max_backoff: 2s
probes:
  period: 1s
"""

if not Path(CHROMIUM).exists():  # CI installs it (scripts/install-system-deps.sh)
    if os.environ.get("CI") == "true":
        raise RuntimeError(f"{CHROMIUM} is missing: run scripts/install-system-deps.sh")
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)", allow_module_level=True)

# a dev dependency: missing under CI is an installation error, not a reason to skip
sync_api = (
    importlib.import_module("playwright.sync_api")
    if os.environ.get("CI") == "true"
    else pytest.importorskip("playwright.sync_api")
)


@pytest.fixture(scope="module")
def sup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSupervisor]:
    home = tmp_path_factory.mktemp("console")
    model = train_model(tmp_path_factory.getbasetemp() / "falcon-model-home")
    running = start_supervisor(home, workers=2, spec_yaml=SPEC, model_dir=model)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        launched = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = os.environ.get("FALCON_TEST_ARTIFACTS")
    path = Path(base) / "console" if base else tmp_path_factory.mktemp("console-screenshots")
    path.mkdir(parents=True, exist_ok=True)
    print(f"\nconsole screenshots: {path}")
    return path


class Watched:
    """A page with its console errors, uncaught exceptions and every URL it requested."""

    def __init__(self, browser: Any, width: int, height: int) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("dialog", lambda d: d.accept())

    def close(self) -> None:
        self.context.close()


def _wait_live_update(page: Any, timeout_s: float = 20.0) -> None:
    """Wait until the page's script has swapped in at least one fresh copy of its sections.
    (Polled from here: the console's CSP forbids the eval that ``wait_for_function`` uses.)"""
    script = "document.body.dataset.updatedAt || '0'"
    before = page.evaluate(script)
    deadline = time.monotonic() + timeout_s
    while page.evaluate(script) == before:
        assert time.monotonic() < deadline, f"no live update within {timeout_s}s"
        page.wait_for_timeout(100)


def test_every_page_loads_clean_and_offline_at_desktop_and_phone_width(
    sup: RunningSupervisor, browser: Any, shots: Path
) -> None:
    """Each page at 1280x800 and 390x844: no console error, nothing fetched from anywhere but
    the control port, a heading, no page-wide horizontal scrolling; the overview names both
    workers as ready; a screenshot per page and width."""
    with LoadGenerator(sup.url, rps=20):
        for width, height, label in ((1280, 800, "desktop"), (390, 844, "phone")):
            watched = Watched(browser, width, height)
            page = watched.page
            try:
                for name in PAGES:
                    response = page.goto(sup.control_url + PATHS[name])
                    assert response is not None, name
                    assert response.status == 200, name
                    if label == "desktop":  # the script's refresh works on every page
                        _wait_live_update(page)
                    assert page.locator("h1").count() == 1, name
                    overflow = page.evaluate(
                        "document.documentElement.scrollWidth - window.innerWidth"
                    )
                    assert overflow <= 1, f"{name} at {width}px scrolls sideways by {overflow}px"
                    page.screenshot(path=str(shots / f"console-{name}-{label}.png"), full_page=True)
                    if name == "overview":
                        rows = page.locator("table.workers tbody tr")
                        assert rows.count() == 2
                        assert page.locator("#ready-count").inner_text() == "2 of 2"
                        states = page.locator("table.workers td.state").all_inner_texts()
                        assert [s.strip() for s in states] == ["ready", "ready"]
            finally:
                watched.close()
            assert watched.errors == [], watched.errors
            outside = [u for u in watched.requests if not u.startswith(sup.control_url + "/")]
            assert outside == [], f"fetched from outside the control port: {outside}"
    docs = Path(__file__).resolve().parents[2] / "docs" / "images"
    if os.environ.get("FALCON_UPDATE_SCREENSHOTS") == "1":
        docs.mkdir(parents=True, exist_ok=True)
        for name in PAGES:
            shutil.copy(shots / f"console-{name}-desktop.png", docs / f"console-{name}.png")


def test_overview_updates_without_reload_when_a_worker_is_killed(
    sup: RunningSupervisor, browser: Any
) -> None:
    """kill -9 a worker: its row's restart count goes up and it leaves and re-enters ready,
    on the page already open (a marker set in the page survives: no reload)."""
    sup.wait_ready(2)
    watched = Watched(browser, 1280, 800)
    page = watched.page
    try:
        page.goto(sup.control_url + "/console/")
        page.evaluate("window.__notReloaded = true")
        victim = next(w for w in sup.status()["workers"] if w["worker"] == "w1")
        row = page.locator('tr[data-worker="w1"]')
        before = int(row.locator("td.restarts").inner_text())
        os.kill(victim["pid"], signal.SIGKILL)
        sync_api.expect(row.locator("td.restarts")).to_have_text(str(before + 1), timeout=30_000)
        sync_api.expect(row.locator("td.state")).to_have_text("ready", timeout=30_000)
        assert page.evaluate("window.__notReloaded === true")
        assert int(row.locator("td:last-child").inner_text()) != victim["pid"]  # the new pid
    finally:
        watched.close()
    assert watched.errors == []


def _events(sup: RunningSupervisor, kind: str) -> list[dict[str, Any]]:
    return sup.events(kind)


def test_actions_need_the_admin_token(sup: RunningSupervisor, browser: Any) -> None:
    """Read-only without the token: no action buttons, a forged POST is refused (401) and
    changes nothing; a wrong token does not sign in; with the token the session cookie is
    HttpOnly and SameSite=Strict, a stale CSRF token or another site's Origin is refused, and
    the rolling-restart button restarts every worker end to end."""
    sup.wait_ready(2)
    started = len(_events(sup, "rolling_restart_started"))
    watched = Watched(browser, 1280, 800)
    page = watched.page
    try:
        page.goto(sup.control_url + "/console/")
        assert page.get_by_role("button", name="Rolling restart").count() == 0
        refused = page.request.post(
            sup.control_url + "/console/actions/restart", form={"csrf": "x", "back": "/console/"}
        )
        assert refused.status == 401
        assert httpx.post(sup.control_url + "/console/actions/restart").status_code == 401
        assert httpx.post(sup.control_url + "/console/actions/rollback").status_code == 401

        page.get_by_role("link", name="Sign in to act").click()
        page.get_by_label("Admin token").fill("not-the-token")
        page.get_by_role("button", name="Sign in").click()
        assert page.get_by_role("alert").inner_text().startswith("Refused")

        token = (Settings(home=sup.home).run_dir / "admin_token").read_text().strip()
        page.get_by_label("Admin token").fill(token)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/console/")
        cookie = next(c for c in watched.context.cookies() if c["name"] == "falcon_console")
        assert cookie["httpOnly"] is True
        assert cookie["sameSite"] == "Strict"
        assert token not in cookie["value"]

        stale = page.request.post(
            sup.control_url + "/console/actions/restart", form={"csrf": "stale", "back": "/"}
        )
        assert stale.status == 403
        csrf = page.locator('form.action input[name="csrf"]').first.get_attribute("value")
        cross = page.request.post(
            sup.control_url + "/console/actions/restart",
            form={"csrf": csrf or "", "back": "/console/"},
            headers={"Origin": "http://evil.example"},
        )
        assert cross.status == 403
        assert len(_events(sup, "rolling_restart_started")) == started  # nothing got through

        pids = {w["pid"] for w in sup.status()["workers"]}
        page.get_by_role("button", name="Rolling restart").click()
        sync_api.expect(page.get_by_role("alert")).to_contain_text("Done: rolling restart")
        sup.wait_for_event(lambda e: True, kind="rolling_restart_finished", timeout=60)
        status = sup.wait_ready(2)
        ready = {w["pid"] for w in status["workers"] if w["state"] == "ready"}
        assert len(ready) == 2
        assert not pids & ready
        assert len(_events(sup, "rolling_restart_started")) == started + 1

        # Roll back: the console's form reaches POST /rollback with the token and shows the
        # control API's own answer (with only the first release there is nothing to go back to,
        # or, in a build without releases, that the route is missing) -- never a 401.
        page.goto(sup.control_url + "/console/releases")
        page.get_by_role("button", name="Roll back").click()
        outcome = page.get_by_role("alert")
        sync_api.expect(outcome).to_contain_text("POST /rollback")
        assert "401" not in outcome.inner_text()
    finally:
        watched.close()
    # the one error the browser logs is the deliberate wrong token's 401 page
    assert watched.errors == [
        "Failed to load resource: the server responded with a status of 401 (Unauthorized)"
    ], watched.errors


def test_incident_acknowledged_from_its_page(sup: RunningSupervisor, browser: Any) -> None:
    """An incident opened through the API shows in the list and on its page with a drafted
    postmortem and its graphs; Acknowledge needs the sign-in and then sets acknowledged_at."""
    token = (Settings(home=sup.home).run_dir / "admin_token").read_text().strip()
    opened = httpx.post(
        sup.control_url + "/incidents",
        json={"title": "console drill: slow answers", "severity": "P3", "by": "test"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert opened.status_code == 201, opened.text
    incident_id = opened.json()["id"]
    watched = Watched(browser, 1280, 800)
    page = watched.page
    try:
        page.goto(sup.control_url + "/console/incidents")
        page.get_by_role("link", name=incident_id).click()
        sync_api.expect(page.locator("h2#detail-h")).to_have_text("console drill: slow answers")
        assert page.get_by_role("button", name="Acknowledge").count() == 0  # read only
        graphs = page.locator("article.postmortem img")
        assert graphs.count() >= 1
        src = graphs.first.get_attribute("src") or ""
        # drawn by matplotlib on first use: generous on a loaded 2-core machine
        png = page.request.get(sup.control_url + src, timeout=120_000)
        assert png.status == 200
        assert png.body()[:4] == b"\x89PNG"
        page.get_by_role("link", name="Sign in to act").click()
        page.get_by_label("Admin token").fill(token)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("button", name="Acknowledge").click()
        sync_api.expect(page.get_by_role("alert")).to_contain_text("Done: acknowledge")
        record = httpx.get(f"{sup.control_url}/incidents/{incident_id}", timeout=30).json()
        assert record["acknowledged_at"] is not None
    finally:
        watched.close()
    assert watched.errors == [], watched.errors


def test_accessibility_basics(sup: RunningSupervisor, browser: Any) -> None:
    """Every form control has a label, every chart and meter a name, the document a language;
    each state tag is a word, and its text colour contrasts >= 4.5:1 with its background."""
    watched = Watched(browser, 1280, 800)
    page = watched.page
    try:
        for path in (
            "/console/",
            "/console/events",
            "/console/login",
            "/console/slos",
            "/console/incidents",
        ):
            page.goto(sup.control_url + path)
            assert page.evaluate("document.documentElement.lang") == "en"
            unlabelled = page.evaluate(
                """[...document.querySelectorAll(
                    'input:not([type=hidden]), select, textarea, meter, svg[role=img]')]
                    .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
                    .map(el => el.outerHTML.slice(0, 80))"""
            )
            assert unlabelled == [], (path, unlabelled)
            tags = page.evaluate(
                """[...document.querySelectorAll('.tag')].map(el => {
                    const s = getComputedStyle(el);
                    return [el.textContent.trim(), s.color, s.backgroundColor]; })"""
            )
            for text, fg, bg in tags:
                assert text, f"a state tag without a word on {path}"
                assert _contrast(fg, bg) >= 4.5, (path, text, fg, bg)
    finally:
        watched.close()


def _contrast(fg: str, bg: str) -> float:
    """WCAG 2 contrast ratio of two ``rgb(r, g, b)`` colours."""

    def luminance(css: str) -> float:
        parts = [float(p) for p in css[css.index("(") + 1 : css.index(")")].split(",")[:3]]
        lin = [
            (c / 255) / 12.92 if c <= 10.3 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in parts
        ]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    high, low = sorted((luminance(fg), luminance(bg)), reverse=True)
    return (high + 0.05) / (low + 0.05)
