"""Falcon's benchmark: Falcon /infer and /v2 infer against a bare ASGI ceiling, same run.

    .venv/bin/python bench/run.py                 # ~1.5 min; prints a table
    .venv/bin/python bench/run.py --json          # the same numbers as JSON
    .venv/bin/python bench/run.py --duration 5 --connections 64

The server is pinned to core 0 (``taskset -c 0``), wrk to core 1; 64 connections;
for each target: a short warm-up, then ``--duration`` seconds with (a) a unique
text per request and (b) one repeated text (a cache hit after the first). The
ceiling is ``bench/bare_asgi.py`` (reads the body, returns a constant). Falcon runs
as deployed by default: request log (segments → SQLite shipper), metrics and JSON
access logs at INFO all on. Each server's RSS is sampled every 100 ms (peak reported).
It is a script, not a test: numbers depend on the machine and on what else runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
LUA = BENCH / "wrk_infer.lua"
UVICORN = [sys.executable, "-m", "uvicorn", "--loop", "uvloop", "--http", "httptools",
           "--no-access-log", "--host", "127.0.0.1"]  # fmt: skip


@dataclass
class Result:
    target: str
    scenario: str
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    peak_rss_mb: float
    rest_rss_mb: float
    cpu_us_per_request: float  # server CPU (all threads) per answered request
    cache_hit_ratio: float | None = None  # Falcon's response cache during the measured run
    ratio_to_ceiling: float = 0.0
    cpu_ratio_to_ceiling: float = 0.0  # ceiling's CPU per request / this one's: robust to noise


class RssSampler:
    """Peak RSS of one process, sampled every 100 ms in a thread."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def free_port() -> int:
    from falcon_platform.testing.net import free_port as _free_port

    return _free_port()


def start(
    cmd: list[str], env: dict[str, str], log: Path, ready_url: str
) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen(["taskset", "-c", "0", *cmd], env=env, stdout=out, stderr=out)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited early ({proc.returncode}); see {log}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(ready_url, timeout=1).status_code in (200, 405):
                return proc
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"server not ready in 120 s; see {log}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wrk(url: str, kind: str, mode: str, seconds: float, connections: int) -> dict[str, Any]:
    duration = max(1, math.ceil(seconds))  # wrk takes whole seconds only
    cmd = ["taskset", "-c", "1", "wrk", "-t2", f"-c{connections}", f"-d{duration}s",
           "--latency", "--timeout", "5s", "-s", str(LUA), url, "--", kind, mode,
           str(time.time_ns())]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True)
    for line in out.stdout.splitlines():
        if line.startswith("WRKJSON "):
            data: dict[str, Any] = json.loads(line[len("WRKJSON ") :])
            return data
    raise SystemExit(f"wrk printed no summary:\n{out.stdout}\n{out.stderr}")


def metric_total(
    text: str, name: str, where: Callable[[dict[str, str]], bool] | None = None
) -> float:
    """Sum of the samples named ``name`` in Prometheus exposition ``text`` (optionally only
    those whose labels pass ``where``)."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and (where is None or where(sample.labels))
    )


def cache_counts(metrics_url: str | None) -> tuple[float, float]:
    """(hits, misses) of Falcon's response cache, from its /metrics."""
    if metrics_url is None:
        return 0.0, 0.0
    text = httpx.get(metrics_url, timeout=5).text
    return (metric_total(text, "falcon_cache_hits_total"),
            metric_total(text, "falcon_cache_misses_total"))  # fmt: skip


def measure(
    name: str,
    proc: subprocess.Popen[bytes],
    url: str,
    scenarios: list[tuple[str, str]],
    args: argparse.Namespace,
    metrics_url: str | None = None,
) -> list[Result]:
    rest = psutil.Process(proc.pid).memory_info().rss
    results = []
    for kind, mode in scenarios:
        wrk(url, kind, mode, args.warmup, args.connections)
        cpu = psutil.Process(proc.pid)
        hits0, misses0 = cache_counts(metrics_url)
        before = sum(cpu.cpu_times()[:2])
        with RssSampler(proc.pid) as rss:
            data = wrk(url, kind, mode, args.duration, args.connections)
        cpu_s = sum(cpu.cpu_times()[:2]) - before
        hits1, misses1 = cache_counts(metrics_url)
        lookups = (hits1 - hits0) + (misses1 - misses0)
        results.append(
            Result(name, mode, data["rps"], data["p50_ms"], data["p99_ms"], data["non_2xx"],
                   data["socket_errors"], rss.peak / 2**20, rest / 2**20,
                   cpu_s * 1e6 / max(data["requests"], 1),
                   (hits1 - hits0) / lookups if metrics_url and lookups else None)
        )  # fmt: skip
        print(f"  {name:<18} {mode:<9} {data['rps']:>9.0f} req/s  p99 {data['p99_ms']:.1f} ms",
              file=sys.stderr)  # fmt: skip
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per scenario")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before each")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--home", type=Path, default=None, help="FALCON_HOME (default: temp)")
    parser.add_argument("--log-level", default="INFO", help="Falcon's FALCON_LOG_LEVEL")
    parser.add_argument(
        "--compare-executors",
        action="store_true",
        help="also run /infer (unique) with FALCON_BATCH_EXECUTOR=thread",
    )
    args = parser.parse_args()
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: run `make system-deps` (Debian package {tool})")

    from falcon_platform.config.settings import Settings
    from falcon_platform.model.registry import ensure_model

    home = args.home or Path(tempfile.mkdtemp(prefix="falcon-bench-"))
    model_path = Path(os.environ.get("FALCON_MODEL_PATH") or ensure_model(Settings(home=home)))
    env = {**os.environ, "FALCON_HOME": str(home), "FALCON_MODEL_PATH": str(model_path),
           "FALCON_LOG_LEVEL": args.log_level}  # fmt: skip
    results: list[Result] = []

    port = free_port()
    print("bare ASGI ceiling ...", file=sys.stderr)
    proc = start([*UVICORN, "--port", str(port), "--app-dir", str(BENCH), "bare_asgi:app"], env,
                 home / "bare.log", f"http://127.0.0.1:{port}/")  # fmt: skip
    try:
        results += measure("bare-asgi", proc, f"http://127.0.0.1:{port}/infer",
                           [("infer", "unique")], args)  # fmt: skip
    finally:
        stop(proc)

    port = free_port()
    print("falcon ...", file=sys.stderr)
    factory = "falcon_platform.serving.asgi:create_app_from_env"
    proc = start([*UVICORN, "--port", str(port), "--factory", factory], env,
                 home / "falcon.log", f"http://127.0.0.1:{port}/readyz")  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        results += measure("falcon /infer", proc, f"{base}/infer",
                           [("infer", "unique"), ("infer", "repeated")], args,
                           f"{base}/metrics")  # fmt: skip
        results += measure("falcon /v2 infer", proc, f"{base}/v2/models/sentiment/infer",
                           [("v2", "unique"), ("v2", "repeated")], args,
                           f"{base}/metrics")  # fmt: skip
        metrics = httpx.get(f"{base}/metrics", timeout=5).text
    finally:
        stop(proc)

    if args.compare_executors:
        port = free_port()
        print("falcon, predict_proba in a thread ...", file=sys.stderr)
        proc = start([*UVICORN, "--port", str(port), "--factory", factory],
                     {**env, "FALCON_BATCH_EXECUTOR": "thread"}, home / "falcon-thread.log",
                     f"http://127.0.0.1:{port}/readyz")  # fmt: skip
        try:
            results += measure("falcon /infer thr", proc, f"http://127.0.0.1:{port}/infer",
                               [("infer", "unique")], args,
                               f"http://127.0.0.1:{port}/metrics")  # fmt: skip
        finally:
            stop(proc)

    ceiling, ceiling_cpu = results[0].rps, results[0].cpu_us_per_request
    for r in results:
        r.ratio_to_ceiling = r.rps / ceiling if ceiling else 0.0
        r.cpu_ratio_to_ceiling = ceiling_cpu / r.cpu_us_per_request if r.cpu_us_per_request else 0
    lost = [
        line for line in metrics.splitlines() if line.startswith("falcon_request_log_rows_lost")
    ]
    if args.json:
        print(json.dumps({"connections": args.connections, "duration_s": args.duration,
                          "results": [asdict(r) for r in results], "request_log_lost": lost},
                         indent=2))  # fmt: skip
        return
    print(f"\n{args.connections} connections, {args.duration:g} s per scenario, server on core 0, "
          "wrk on core 1\n")  # fmt: skip
    print(f"{'target':<18} {'texts':<9} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'ratio':>7} {'cpu us':>7} {'cpu ratio':>9} {'rest MB':>8} {'peak MB':>8} "
          f"{'non-2xx':>8} {'hits':>5}")  # fmt: skip
    for r in results:
        print(f"{r.target:<18} {r.scenario:<9} {r.rps:>9.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} "
              f"{r.ratio_to_ceiling:>7.1%} {r.cpu_us_per_request:>7.1f} "
              f"{r.cpu_ratio_to_ceiling:>9.1%} {r.rest_rss_mb:>8.0f} {r.peak_rss_mb:>8.0f} "
              f"{r.non_2xx + r.socket_errors:>8} "
              f"{'' if r.cache_hit_ratio is None else f'{r.cache_hit_ratio:.0%}':>5}")  # fmt: skip
    print("\nratio = req/s / the ceiling's req/s in this run; cpu ratio = the ceiling's CPU per "
          "request / this one's\n(robust when other processes share the core); hits = Falcon's "
          "response-cache hit ratio in the measured run.")  # fmt: skip
    print("\n".join(lost))


if __name__ == "__main__":
    main()
