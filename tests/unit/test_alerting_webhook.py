"""The Alertmanager-format webhook: payload shape, retries on transient failures, real HTTP."""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from falcon_platform.config.settings import Settings
from falcon_platform.config.spec import Spec
from falcon_platform.errors import DependencyError
from falcon_platform.observability import names
from falcon_platform.observability.evaluator import AlertEvaluator, AlertTransition
from falcon_platform.observability.webhook import (
    ZERO_TIME,
    alertmanager_payload,
    send_transitions,
    send_webhook,
)
from falcon_platform.testing import FakeSLISource

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def _transitions() -> list[AlertTransition]:
    source = FakeSLISource()
    source.add(names.CRASH_LOOP, {"release": "r2"}, T0, 1)
    source.add(names.CRASH_LOOP, {"release": "r3"}, T0, 1)
    evaluator = AlertEvaluator(Spec())
    fired = evaluator.evaluate(source, T0)
    source.add(names.CRASH_LOOP, {"release": "r3"}, T0 + 30, 0)
    resolved = evaluator.evaluate(source, T0 + 30)
    return fired[:1] + resolved


def test_payload_is_alertmanager_webhook_version_4() -> None:
    firing, resolved = _transitions()
    body = alertmanager_payload([firing, resolved], external_url="http://127.0.0.1:8001")
    assert (body["version"], body["status"], body["receiver"]) == ("4", "firing", "falcon")
    assert body["commonLabels"] == {
        "alertname": "FalconCrashLoop",
        "severity": "critical",
        "service": "falcon",
    }
    first, second = body["alerts"]
    assert (first["status"], first["startsAt"], first["endsAt"]) == (
        "firing",
        "2026-01-01T00:00:00.000Z",
        ZERO_TIME,
    )
    assert (second["status"], second["endsAt"]) == ("resolved", "2026-01-01T00:00:30.000Z")
    assert first["labels"]["release"] == "r2"
    assert first["annotations"]["runbook_url"].endswith("#falconcrashloop")
    assert first["generatorURL"] == "http://127.0.0.1:8001/alerts"
    assert len(first["fingerprint"]) == 16
    assert first["fingerprint"] != second["fingerprint"]
    assert alertmanager_payload([resolved])["status"] == "resolved"


def test_transient_failures_are_retried_until_success() -> None:
    answers = iter([503, 429, 200])
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(next(answers))

    send_webhook("http://hooks.test/x", {"version": "4"}, transport=httpx.MockTransport(handler))
    assert len(seen) == 3
    assert json.loads(seen[0].content) == {"version": "4"}


def test_a_refusal_is_not_retried_and_names_the_fix() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(400, text="bad payload")

    with pytest.raises(DependencyError, match="FALCON_ALERT_WEBHOOK_URL"):
        send_webhook("http://hooks.test/x", {}, transport=httpx.MockTransport(handler))
    assert len(calls) == 1


def test_an_unreachable_receiver_fails_after_the_attempts() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(DependencyError, match="failed after 2 tries"):
        send_webhook("http://hooks.test/x", {}, attempts=2, transport=httpx.MockTransport(handler))
    assert len(calls) == 2


def test_send_transitions_does_nothing_without_a_url_or_without_transitions() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200)

    transport = httpx.MockTransport(handler)
    send_transitions(Settings(), _transitions(), transport=transport)
    send_transitions(Settings(alert_webhook_url="http://hooks.test/x"), [], transport=transport)
    assert calls == []
    send_transitions(
        Settings(alert_webhook_url="http://hooks.test/x"), _transitions(), transport=transport
    )
    assert [str(c.url) for c in calls] == ["http://hooks.test/x"]  # the same handler does count


class _Receiver(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.server.received.append(json.loads(self.rfile.read(length)))  # type: ignore[attr-defined]
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.integration
def test_send_transitions_posts_to_the_configured_url_over_real_http(
    receiver: ThreadingHTTPServer,
) -> None:
    host, port = receiver.server_address[:2]
    settings = Settings(alert_webhook_url=f"http://{host}:{port}/hook")
    send_transitions(settings, _transitions())
    (body,) = receiver.received  # type: ignore[attr-defined]
    assert body["version"] == "4"
    assert [a["status"] for a in body["alerts"]] == ["firing", "resolved"]
