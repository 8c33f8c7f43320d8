"""A real Prometheus scraping a running Falcon, with the rendered rules: errors injected under
the staging profile make FalconHighErrorRate fire, seen through Prometheus's HTTP API, and the
supervisor's own evaluator fires the same alert (`GET /alerts` on the control API, `falcon
alerts`, and an Alertmanager-format webhook to FALCON_ALERT_WEBHOOK_URL).

Durations are shortened through the spec file (the same file renders the rules and configures
the supervisor), so the whole test takes well under a minute once the model is trained.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from falcon_platform.config.specfile import load_spec
from falcon_platform.render.prometheus import RULES_FILENAME, render_rules
from falcon_platform.testing.net import free_port, wait_for_http
from falcon_platform.testing.servers import find_binary
from falcon_platform.testing.supervisor import LoadGenerator, start_supervisor, train_model

pytestmark = pytest.mark.e2e

SPEC = """
alerts:
  error_rate_window: 10s
  error_rate_for: 5s
  evaluation_interval: 1s
"""


@pytest.fixture(scope="module")
def prometheus_bin() -> str:
    return find_binary("prometheus")  # skips with the reason, fails when CI=true


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_model(tmp_path_factory.getbasetemp() / "falcon-model-home")


class _Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append(json.loads(body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A real HTTP endpoint on loopback collecting the JSON bodies posted to it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", server.received  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def run_prometheus(binary: str, workdir: Path, target: str, rules: str) -> Iterator[str]:
    """Prometheus on a free loopback port, scraping ``target`` every second with ``rules``."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / RULES_FILENAME).write_text(rules)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [RULES_FILENAME],
        "scrape_configs": [{"job_name": "falcon", "static_configs": [{"targets": [target]}]}],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (workdir / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/-/ready", timeout=60)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def _firing(alerts: list[dict[str, Any]]) -> set[str]:
    return {a["labels"]["alertname"] for a in alerts if a.get("state") == "firing"}


def test_injected_errors_fire_the_error_rate_alert_in_prometheus_and_locally(
    tmp_path: Path,
    model_dir: Path,
    prometheus_bin: str,
    webhook: tuple[str, list[dict[str, Any]]],
) -> None:
    spec_file = tmp_path / "alert-spec.yaml"
    spec_file.write_text(SPEC)
    rules = render_rules(load_spec(spec_file))
    hook_url, posted = webhook
    sup = start_supervisor(
        tmp_path,
        workers=1,
        spec_yaml=SPEC,
        model_dir=model_dir,
        env={
            "FALCON_PROFILE": "staging",
            "FALCON_FAULTS": "error_ratio=0.3,seed=7",
            "FALCON_ALERT_WEBHOOK_URL": hook_url,
        },
    )
    seen_prometheus: float | None = None
    seen_local: float | None = None
    try:
        target = f"127.0.0.1:{sup.control_port}"
        with run_prometheus(prometheus_bin, tmp_path / "prom", target, rules) as prom:
            started = time.monotonic()
            with LoadGenerator(sup.url, rps=40) as load:
                deadline = started + 90
                while time.monotonic() < deadline and (
                    seen_prometheus is None or seen_local is None
                ):
                    prom_alerts = httpx.get(f"{prom}/api/v1/alerts", timeout=5).json()["data"][
                        "alerts"
                    ]
                    if seen_prometheus is None and "FalconHighErrorRate" in _firing(prom_alerts):
                        seen_prometheus = time.monotonic() - started
                    local = httpx.get(f"{sup.control_url}/alerts", timeout=5).json()["alerts"]
                    if seen_local is None and "FalconHighErrorRate" in _firing(local):
                        seen_local = time.monotonic() - started
                    time.sleep(0.5)
            result = load.result()
            cli_json = sup.cli("alerts", "--json")
            cli_table = sup.cli("alerts")
            rule_health = httpx.get(f"{prom}/api/v1/rules", timeout=5).json()["data"]["groups"]
            targets = httpx.get(f"{prom}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
    finally:
        sup.stop()
    print(
        f"\nerror_ratio=0.3 at ~40 RPS ({result.describe()}): FalconHighErrorRate firing after "
        f"{seen_prometheus}s in Prometheus, {seen_local}s in the local evaluator"
    )
    assert [t["health"] for t in targets] == ["up"]
    unhealthy = [
        (r["name"], r.get("lastError"))
        for g in rule_health
        for r in g["rules"]
        if r["health"] != "ok"
    ]
    assert unhealthy == []
    assert 0.15 < result.failed / max(result.total, 1) < 0.45  # the fault really ran
    assert seen_prometheus is not None, "Prometheus never fired FalconHighErrorRate"
    assert seen_local is not None, "the supervisor's evaluator never fired FalconHighErrorRate"
    assert "FalconFaultsActiveInProd" not in _firing(prom_alerts)  # staging, not prod
    assert cli_json.returncode == 0, cli_json.stderr
    listed = json.loads(cli_json.stdout)["alerts"]
    assert "FalconHighErrorRate" in {a["name"] for a in listed if a["state"] == "firing"}
    assert cli_table.returncode == 0, cli_table.stderr
    assert "FalconHighErrorRate" in cli_table.stdout
    webhook_alerts = [a for body in posted for a in body["alerts"]]
    assert all(body["version"] == "4" for body in posted)
    assert ("FalconHighErrorRate", "firing") in {
        (a["labels"]["alertname"], a["status"]) for a in webhook_alerts
    }


LEAK_SPEC = """
workers:
  memory_limit_mb: 320
  memory_soft_limit_percent: 0
restart:
  initial_backoff: 1s
  max_backoff: 2s
alerts:
  memory_growth_percent: 60
  memory_growth_window: 10s
  memory_growth_horizon: 60s
  memory_growth_for: 2s
  evaluation_interval: 1s
"""


def test_seed_leak_memory_growth_alert_fires_before_the_oom_kill(
    tmp_path: Path, model_dir: Path, prometheus_bin: str
) -> None:
    """The seed incident on real processes, time-compressed (limit reached in ~30 s instead of
    2 min, alert windows scaled in the spec): both evaluators flag the growth before the first
    OOM kill, then alert on the kill."""
    spec_file = tmp_path / "leak-spec.yaml"
    spec_file.write_text(LEAK_SPEC)
    rules = render_rules(load_spec(spec_file))
    sup = start_supervisor(
        tmp_path,
        workers=1,
        spec_yaml=LEAK_SPEC,
        model_dir=model_dir,
        env={
            "FALCON_PROFILE": "dev",
            "FALCON_FAULTS": "leak_mb_per_request=0.25",
            # Also in the workers' environment, so each worker's own falcon_memory_limit_bytes
            # (what Prometheus scrapes) is the enforced limit rather than 0.
            "FALCON_MEMORY_LIMIT_MB": "320",
        },
    )
    watched = ("FalconWorkerMemoryGrowth", "FalconWorkerOOMKilled")
    local: dict[str, float] = {}
    prometheus: dict[str, float] = {}
    first_kill: float | None = None
    try:
        target = f"127.0.0.1:{sup.control_port}"
        with run_prometheus(prometheus_bin, tmp_path / "prom", target, rules) as prom:
            # The start-up ramp must leave the regression window first (it looks like growth).
            time.sleep(13)
            before = httpx.get(f"{prom}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
            at_rest = _firing(before) | _firing(
                httpx.get(f"{sup.control_url}/alerts", timeout=5).json()["alerts"]
            )
            started = time.monotonic()
            with LoadGenerator(sup.url, rps=20):
                while time.monotonic() < started + 120 and len(local) + len(prometheus) < 4:
                    now = time.monotonic() - started
                    prom_alerts = httpx.get(f"{prom}/api/v1/alerts", timeout=5).json()["data"][
                        "alerts"
                    ]
                    for name in _firing(prom_alerts) & set(watched):
                        prometheus.setdefault(name, now)
                    ours = httpx.get(f"{sup.control_url}/alerts", timeout=5).json()["alerts"]
                    for name in _firing(ours) & set(watched):
                        local.setdefault(name, now)
                    if first_kill is None and any(
                        e["details"].get("oom_killed") for e in sup.events("worker_exited")
                    ):
                        first_kill = now
                    time.sleep(0.5)
    finally:
        sup.stop()
    print(
        f"\nseed leak (0.25 MB/request at 20 RPS, limit 320 MB): first OOM kill seen at "
        f"{first_kill}s; local evaluator {local}; Prometheus {prometheus}"
    )
    assert not at_rest & set(watched), at_rest
    assert first_kill is not None, "the leak never reached the memory limit"
    assert set(local) == set(watched), local
    assert set(prometheus) == set(watched), prometheus
    assert local["FalconWorkerMemoryGrowth"] < first_kill
    assert prometheus["FalconWorkerMemoryGrowth"] < first_kill
