"""Outage tests under load: a real Falcon server process, real redis-server and PostgreSQL.

The shared open-model load generator (``falcon_platform.testing.supervisor.LoadGenerator`` over
``falcon_platform.loadtest``, a few hundred requests/s) runs while the
test kills Redis, stops PostgreSQL, holds a lock on the request-log table or fills the
request-log disk budget. Each test prints the measured effect (failed requests, rows lost,
latency per phase); run with ``-s`` to see it:

    .venv/bin/pytest -s -m integration tests/integration/test_outage_stores.py
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy import func, select

from falcon_platform.config.settings import Settings
from falcon_platform.model.registry import ensure_model
from falcon_platform.stores import database
from falcon_platform.stores.schema import request_log
from falcon_platform.testing.net import free_port, wait_for_http
from falcon_platform.testing.servers import running_postgres, running_redis
from falcon_platform.testing.supervisor import LoadGenerator, Sample

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TEXTS = [
    f"{opening} {subject} {ending}"
    for opening in ("honestly the", "I think the", "wow, the", "meh, the", "sadly the")
    for subject in (
        "battery",
        "screen",
        "service",
        "hotel room",
        "app update",
        "pasta",
        "support ticket",
        "flight",
    )
    for ending in ("was great", "was not bad at all")
]  # 80 distinct texts: a repeated workload, so the response cache has something to hit


@dataclass
class Phase:
    name: str
    start: float
    end: float


class ServerProcess:
    """``uvicorn --factory falcon_platform.serving.asgi:create_app_from_env`` on a free port."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            **env,
            "FALCON_PORT": str(self.port),
            "FALCON_LOG_LEVEL": "WARNING",
        }
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90) -> None:
        uvicorn = str(Path(sys.executable).parent / "uvicorn")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [uvicorn, "--factory", "falcon_platform.serving.asgi:create_app_from_env",
                 "--host", "127.0.0.1", "--port", str(self.port), "--no-access-log"],
                env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            wait_for_http(self.url + "/readyz", timeout=timeout)
        except TimeoutError:
            self.kill()
            raise AssertionError(f"server did not get ready:\n{self.log_tail()}") from None

    def terminate(self, timeout: float = 60) -> bool:
        """SIGTERM and wait; True when it shut down gracefully (the request log was shipped).

        uvicorn re-raises the signal after a graceful shutdown, so -SIGTERM is a clean exit
        too; the log line tells a graceful shutdown from a killed one.
        """
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self.proc = None
        return code in (0, -signal.SIGTERM) and "Application shutdown complete" in self.log_tail(
            500
        )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def metrics(self) -> str:
        return httpx.get(self.url + "/metrics", timeout=5).text


@contextmanager
def running_server(env: dict[str, str], log_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(env, log_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


def load_generator(url: str, rps: float) -> LoadGenerator:
    """The shared open-model generator on keep-alive connections, cycling the 80 TEXTS (the
    response cache has something to hit), one :class:`Sample` per request; request ids
    ``loadx…`` (:func:`logged_ids` finds their rows)."""
    return LoadGenerator(url, rps=rps, connections=64, keep_alive=True, texts=TEXTS,
                         prefix="loadx", record=True)  # fmt: skip


def window(samples: list[Sample], start: float, end: float) -> list[Sample]:
    return [s for s in samples if start <= s.t < end]


def p99(samples: list[Sample]) -> float:
    latencies = sorted(s.latency_ms for s in samples)
    return latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else 0.0


def p50(samples: list[Sample]) -> float:
    latencies = sorted(s.latency_ms for s in samples)
    return latencies[len(latencies) // 2] if latencies else 0.0


def hit_ratio(samples: list[Sample]) -> float:
    ok = [s for s in samples if s.status == 200]
    return sum(s.cache_hit for s in ok) / len(ok) if ok else 0.0


def summary(name: str, samples: list[Sample]) -> str:
    failed = sum(1 for s in samples if s.status != 200)
    return (
        f"{name}: n={len(samples)} failed={failed} p50={p50(samples):.1f}ms "
        f"p99={p99(samples):.1f}ms hit_ratio={hit_ratio(samples):.2f} "
        f"degraded={sum(1 for s in samples if s.degraded)}"
    )


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Train the default model once for every server in this module."""
    return ensure_model(Settings(home=tmp_path_factory.mktemp("model-home")))


def server_env(home: Path, model_path: Path, **extra: str) -> dict[str, str]:
    return {
        "FALCON_HOME": str(home),
        "FALCON_MODEL_PATH": str(model_path),
        "FALCON_WORKERS": "1",
        "FALCON_WORKER_ID": "w0",
        "FALCON_BREAKER_RESET_TIMEOUT_S": "1",
        "FALCON_SHUTDOWN_GRACE_S": "30",
        **extra,
    }


def logged_ids(url: str, home: Path) -> tuple[set[str], int]:
    """(distinct request ids, total rows) of the load generator's rows in the request log."""
    settings = (
        Settings(home=home, database_url=url) if url.startswith("postgres") else Settings(home=home)
    )
    engine = database.make_engine(settings, pool_size=1)
    try:
        with engine.connect() as conn:
            ids = [
                r[0]
                for r in conn.execute(
                    select(request_log.c.client_request_id).where(
                        request_log.c.client_request_id.like("load%")
                    )
                )
            ]
            total = conn.execute(
                select(func.count())
                .select_from(request_log)
                .where(request_log.c.client_request_id.like("load%"))
            ).scalar_one()
    finally:
        engine.dispose()
    return set(ids), int(total)


def report(title: str, lines: list[str]) -> None:
    text = "\n".join([f"== {title}", *lines])
    print(text)  # visible with -s; the numbers quoted in the docs come from here


# --- 1. Redis killed mid-load --------------------------------------------------------------


def test_redis_killed_mid_load_fails_no_request_and_cache_hit_ratio_recovers(
    tmp_path: Path, model_path: Path
) -> None:
    with running_redis() as redis:
        env = server_env(tmp_path / "home", model_path, FALCON_REDIS_URL=redis.url)
        with running_server(env, tmp_path / "server.log") as server:
            with load_generator(server.url, rps=200) as load:
                time.sleep(6)
                redis.kill()
                killed_at = load.now()
                time.sleep(8)
                redis.start()
                back_at = load.now()
                time.sleep(10)
            samples = load.samples()
            metrics = server.metrics()
            assert server.terminate(), server.log_tail()

    before = window(samples, 1, killed_at)
    during = window(samples, killed_at + 0.5, back_at)
    after = window(samples, back_at + 4, 1e9)
    failed = [s for s in samples if s.status != 200]
    report("redis killed for 8 s at 200 rps", [summary("before", before), summary("redis down", during),
                                                summary("after", after), f"failed requests: {len(failed)}"])  # fmt: skip
    assert not failed, f"{len(failed)} failed requests, e.g. {failed[:3]}"
    assert hit_ratio(before) > 0.5, "80 repeated texts: the Redis cache must be hitting"
    assert hit_ratio(during) < 0.05, "while Redis is down the cache is bypassed"
    assert sum(1 for s in during if s.degraded == "redis") > 0.9 * len(during)
    assert hit_ratio(after) > 0.5, "cache hit ratio recovers after Redis is back"
    assert not any(s.degraded for s in after)
    assert (
        metric_value(
            metrics, "falcon_circuit_breaker_transitions_total", dependency="redis", to_state="open"
        )
        >= 1
    )
    assert (
        metric_value(
            metrics,
            "falcon_circuit_breaker_transitions_total",
            dependency="redis",
            to_state="closed",
        )
        >= 1
    )
    assert metric_value(metrics, "falcon_circuit_breaker_state", dependency="redis") == 0
    assert (
        metric_value(metrics, "falcon_degraded_responses_total", dependency="redis")
        >= len(during) * 0.9
    )


# --- 2 + 3. PostgreSQL stopped for 30 s, then slow (table locked) for 30 s -------------------


def test_postgres_stopped_then_locked_mid_load_fails_nothing_loses_nothing_and_latency_holds(
    tmp_path: Path, model_path: Path
) -> None:
    home = tmp_path / "home"
    with running_postgres() as pg:
        database.upgrade(Settings(home=home, database_url=pg.url))  # type: ignore[arg-type]
        env = server_env(
            home, model_path, FALCON_DATABASE_URL=pg.url, FALCON_DATABASE_TIMEOUT_S="1"
        )
        with running_server(env, tmp_path / "server.log") as server:
            with load_generator(server.url, rps=200) as load:
                time.sleep(8)
                pg.stop()
                down_at = load.now()
                time.sleep(30)
                during_down_metrics = server.metrics()
                pg.start()
                up_at = load.now()
                time.sleep(8)
                with psycopg.connect(pg.url) as locker:  # "slow": every insert waits on it
                    locker.execute("LOCK TABLE request_log IN ACCESS EXCLUSIVE MODE")
                    locked_at = load.now()
                    time.sleep(30)
                    locker.rollback()
                unlocked_at = load.now()
                time.sleep(6)
            samples = load.samples()
            metrics = server.metrics()
            assert server.terminate(), server.log_tail()
        ids, total = logged_ids(pg.url, home)

    ok = {s.request_id for s in samples if s.status == 200}
    failed = [s for s in samples if s.status != 200]
    baseline = window(samples, 2, down_at)
    down = window(samples, down_at, up_at)
    slow = window(samples, locked_at, unlocked_at)
    lost = ok - ids
    report("postgresql stopped 30 s, then table locked 30 s, at 200 rps", [
        summary("baseline", baseline), summary("postgres down", down), summary("postgres slow (locked)", slow),
        summary("after", window(samples, unlocked_at, 1e9)),
        f"failed requests: {len(failed)}; 2xx: {len(ok)}; rows: {total}; lost: {len(lost)}; "
        f"spilled during outage: {metric_value(during_down_metrics, 'falcon_request_log_rows_spilled_total')}",
    ])  # fmt: skip
    assert not failed, f"{len(failed)} failed requests, e.g. {failed[:3]}"
    assert not lost, f"{len(lost)} rows of 2xx responses missing, e.g. {sorted(lost)[:3]}"
    assert total == len(ids) == len(ok), "each request id exactly once"
    assert metric_value(during_down_metrics, "falcon_request_log_rows_pending") > 1000
    assert metric_value(
        during_down_metrics, "falcon_circuit_breaker_state", dependency="postgresql"
    ) in (1, 2)
    assert metric_value(metrics, "falcon_request_log_rows_lost_total") == 0
    assert (
        metric_value(
            metrics,
            "falcon_circuit_breaker_transitions_total",
            dependency="postgresql",
            to_state="open",
        )
        >= 2
    )
    assert (
        metric_value(
            metrics,
            "falcon_circuit_breaker_transitions_total",
            dependency="postgresql",
            to_state="closed",
        )
        >= 2
    )
    # Inference never waits on PostgreSQL: a request path that waited on the 1 s lock/statement
    # time-out would put every request of these phases at >= 1,000 ms. Latency is measured
    # from each scheduled start (open model), so a scheduling hiccup of the shared 2-core
    # machine delays every request due during it, not just the few in flight: the p99 margin
    # absorbs that, and stays an order of magnitude below the 1 s a waiting path would show.
    margin_ms = max(100.0, p99(baseline))
    for phase, name in ((down, "down"), (slow, "slow")):
        assert p50(phase) <= p50(baseline) + 10, summary(name, phase)
        assert p99(phase) <= p99(baseline) + margin_ms, summary(name, phase)


# --- the disk budget -----------------------------------------------------------------------


def test_spent_disk_budget_refuses_with_503_and_retry_after_and_loses_no_row(
    tmp_path: Path, model_path: Path
) -> None:
    home = tmp_path / "home"
    with running_postgres() as pg:
        database.upgrade(Settings(home=home, database_url=pg.url))  # type: ignore[arg-type]
        env = server_env(home, model_path, FALCON_DATABASE_URL=pg.url, FALCON_DATABASE_TIMEOUT_S="1",
                         FALCON_REQUEST_LOG_DISK_BUDGET_MB="1", FALCON_LOG_INPUTS="true")  # fmt: skip
        with (
            running_server(env, tmp_path / "server.log") as server,
            httpx.Client(base_url=server.url, timeout=10) as client,
        ):
            pg.stop()
            statuses: dict[str, int] = {}
            refused: httpx.Response | None = None
            for i in range(400):  # ~9 kB per row (inputs logged): 1 MiB lasts ~110 requests
                rid = f"load0x{i:07d}"
                r = client.post(
                    "/infer", json={"text": f"{i} " + "fine " * 1800}, headers={"X-Request-ID": rid}
                )
                statuses[rid] = r.status_code
                if r.status_code == 503:
                    refused = r
                    break
            assert refused is not None, "the disk budget never ran out"
            assert refused.json()["error"] == "overloaded"
            assert int(refused.headers["retry-after"]) > 0
            assert "disk budget" in refused.json()["detail"]
            metrics = server.metrics()
            assert metric_value(metrics, "falcon_request_log_disk_bytes") > 0.8 * metric_value(
                metrics, "falcon_request_log_disk_budget_bytes"
            )
            assert "request_log_disk_budget_high" in server.log_tail(200_000)
            pg.start()
            deadline = time.monotonic() + 30
            recovered = None
            while time.monotonic() < deadline:
                rid = f"load1x{int(time.monotonic() * 1000)}"
                r = client.post(
                    "/infer", json={"text": "back again"}, headers={"X-Request-ID": rid}
                )
                statuses[rid] = r.status_code
                if r.status_code == 200:
                    recovered = rid
                    break
                time.sleep(0.5)
            assert recovered is not None, "requests are accepted again once the spool drains"
            assert server.terminate(), server.log_tail()
        ids, total = logged_ids(pg.url, home)
    ok = {rid for rid, status in statuses.items() if status == 200}
    report("request-log disk budget (1 MiB) spent while PostgreSQL is down", [
        f"2xx before refusal: {sum(1 for k, v in statuses.items() if v == 200 and k.startswith('load0'))}; "
        f"rows: {total}; lost: {len(ok - ids)}"])  # fmt: skip
    assert ok == ids
    assert total == len(ok)


# --- issue 2: SIGKILL mid-load ---------------------------------------------------------------


def test_server_sigkilled_mid_load_every_2xx_has_exactly_one_row_after_restart(
    tmp_path: Path, model_path: Path
) -> None:
    home = tmp_path / "home"
    env = server_env(home, model_path)
    server = ServerProcess(env, tmp_path / "server.log")
    server.start()
    try:
        with load_generator(server.url, rps=300) as load:
            time.sleep(5)
            server.kill()  # SIGKILL: no shutdown, no final shipping
        samples = load.samples()
        server.start()  # same worker id: ships its predecessor's spool at start
        assert server.terminate(), server.log_tail()
    finally:
        server.kill()
    ids, total = logged_ids("", home)
    ok = {s.request_id for s in samples if s.status == 200}
    report(
        "server SIGKILLed under 300 rps", [f"2xx: {len(ok)}; rows: {total}; lost: {len(ok - ids)}"]
    )
    assert len(ok) > 500
    assert not ok - ids, f"{len(ok - ids)} acknowledged rows lost"
    assert total == len(ids)
    assert list((home / "spool" / "w0").glob("*")) == []
