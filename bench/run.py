"""Falcon's benchmark: Falcon /infer and /v2 infer against a bare ASGI ceiling, same run.

    .venv/bin/python bench/run.py                 # ~1.5 min; prints a table
    .venv/bin/python bench/run.py --json          # the same numbers as JSON
    .venv/bin/python bench/run.py --duration 5 --connections 64
    .venv/bin/python bench/run.py --stores redis  # /infer with Redis and/or PostgreSQL stores
    .venv/bin/python bench/run.py --supervisor 2  # + `falcon up --workers 2`: memory per worker
    .venv/bin/python bench/run.py --stores redis --profile prof/   # + py-spy of each Falcon run

The server is pinned to core 0 (``taskset -c 0``), wrk to core 1; 64 connections;
for each target: a short warm-up, then ``--duration`` seconds with (a) a unique
text per request and (b) one repeated text (a cache hit after the first). The
ceiling is ``bench/bare_asgi.py`` (reads the body, returns a constant) under the stock
uvicorn CLI. Falcon runs as deployed by default: the worker entry (``python -m
falcon_platform.worker``, as `falcon up` and the Kubernetes pod run it, with Falcon's
connection layer; ``--server uvicorn``: the stock uvicorn CLI, as runs before 2026-11-30
evening measured), request log (segments → SQLite shipper), metrics and JSON
access logs at INFO all on. Each server's RSS is sampled every 100 ms and its PSS
(``/proc/<pid>/smaps_rollup``) every 500 ms: at rest (before any load) and the peak.

``--stores redis`` starts a private redis-server and PostgreSQL (pinned to core 1, beside
wrk) and measures /infer with unique texts under four store configurations: embedded
(SQLite, in-process cache), PostgreSQL request log only, Redis cache + idempotency only,
Redis + PostgreSQL; the table adds the mean micro-batch (texts per model call).
``--supervisor N`` also runs Falcon as deployed on one machine (supervisor, zygote, N forked
workers, all on core 0) and reports each worker's RSS and PSS at rest and under load: forked
workers share the zygote's pages, which PSS divides among them and RSS counts in full.
It is a script, not a test: numbers depend on the machine and on what else runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from procmem import MemorySampler, cpu_seconds, main_thread_cpu_seconds, pss_bytes, rss_bytes
from prometheus_client.parser import text_string_to_metric_families
from pyspy import Profiler, summarise

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
LUA = BENCH / "wrk_infer.lua"
FALCON = Path(sys.executable).parent / "falcon"
UVICORN = [sys.executable, "-m", "uvicorn", "--loop", "uvloop", "--http", "httptools",
           "--no-access-log", "--host", "127.0.0.1"]  # fmt: skip
MB = 2**20


@dataclass
class Result:
    target: str
    scenario: str
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    rest_rss_mb: float
    peak_rss_mb: float
    rest_pss_mb: float
    peak_pss_mb: float
    cpu_us_per_request: float  # server CPU (all threads) per answered request
    cache_hit_ratio: float | None = None  # Falcon's response cache during the measured run
    mean_batch: float | None = None  # texts per predict_proba call during the measured run
    ratio_to_ceiling: float = 0.0
    cpu_ratio_to_ceiling: float = 0.0  # ceiling's CPU per request / this one's: robust to noise
    # With Redis: commands Redis served per request (its INFO commandstats), and round trips
    # per request (Falcon's falcon_redis_round_trips_total; None for a build without it).
    redis_commands_per_request: float | None = None
    redis_round_trips_per_request: float | None = None
    # Of cpu_us_per_request, the main thread's share (the event loop; the rest is the request-log
    # shipper and log-flush threads): robust where py-spy's sample shares are not, since a
    # runnable thread waiting for the one core is sampled as busy too.
    loop_cpu_us_per_request: float = 0.0


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


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    proc.send_signal(sig)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wrk(
    url: str, kind: str, mode: str, seconds: float, connections: int, keys: bool = False
) -> dict[str, Any]:
    duration = max(1, math.ceil(seconds))  # wrk takes whole seconds only
    cmd = ["taskset", "-c", "1", "wrk", "-t2", f"-c{connections}", f"-d{duration}s",
           "--latency", "--timeout", "5s", "-s", str(LUA), url, "--", kind, mode,
           str(time.time_ns()), "keys" if keys else "nokeys"]  # fmt: skip
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


def counters(metrics_url: str | None) -> dict[str, float]:
    """Falcon's cache and batch counters from its /metrics (empty without a URL)."""
    if metrics_url is None:
        return {}
    text = httpx.get(metrics_url, timeout=5).text
    names = ("falcon_cache_hits_total", "falcon_cache_misses_total",
             "falcon_batch_size_sum", "falcon_batch_size_count")  # fmt: skip
    found = {name: metric_total(text, name) for name in names}
    if "falcon_redis_round_trips_total" in text:
        found["falcon_redis_round_trips_total"] = metric_total(
            text, "falcon_redis_round_trips_total"
        )
    return found


REDIS_DATA_COMMANDS = ("get", "mget", "set")  # what Falcon's cache and idempotency send


def redis_commands(redis_url: str | None) -> float:
    """Cache/idempotency commands Redis has served so far (INFO commandstats; 0 without a URL)."""
    if redis_url is None:
        return 0.0
    import redis

    with redis.Redis.from_url(redis_url) as client:
        stats: dict[str, dict[str, Any]] = client.info("commandstats")
    return float(sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0)
                     for name in REDIS_DATA_COMMANDS))  # fmt: skip


def measure(
    name: str,
    pid: int,
    url: str,
    scenarios: list[tuple[str, str]],
    args: argparse.Namespace,
    metrics_url: str | None = None,
    keys: bool = False,
    redis_url: str | None = None,
) -> list[Result]:
    rest_rss, rest_pss = rss_bytes(pid), pss_bytes(pid)
    results = []
    for kind, mode in scenarios:
        wrk(url, kind, mode, args.warmup, args.connections, keys)
        before, cpu0, cmds0 = counters(metrics_url), cpu_seconds(pid), redis_commands(redis_url)
        loop0 = main_thread_cpu_seconds(pid)
        profile = None
        if getattr(args, "profile", None) is not None and metrics_url is not None:
            slug = re.sub(r"[^a-z0-9]+", "-", f"{name} {mode}".lower()).strip("-")
            profile = Profiler(pid, args.duration - 1, args.profile / f"{slug}.txt")
        with MemorySampler([pid]) as memory, profile or contextlib.nullcontext():
            data = wrk(url, kind, mode, args.duration, args.connections, keys)
        cpu_s = cpu_seconds(pid) - cpu0
        loop_s = main_thread_cpu_seconds(pid) - loop0
        after = counters(metrics_url)
        commands = redis_commands(redis_url) - cmds0
        requests = max(data["requests"], 1)
        trips = after.get("falcon_redis_round_trips_total")
        delta = {k: after[k] - before[k] for k in after}
        lookups = delta.get("falcon_cache_hits_total", 0) + delta.get(
            "falcon_cache_misses_total", 0
        )
        calls = delta.get("falcon_batch_size_count", 0)
        results.append(
            Result(name, mode, data["rps"], data["p50_ms"], data["p99_ms"], data["non_2xx"],
                   data["socket_errors"], rest_rss / MB, memory.peak_rss[pid] / MB,
                   rest_pss / MB, memory.peak_pss[pid] / MB,
                   cpu_s * 1e6 / max(data["requests"], 1),
                   delta["falcon_cache_hits_total"] / lookups if metrics_url and lookups else None,
                   delta["falcon_batch_size_sum"] / calls if calls else None,
                   redis_commands_per_request=commands / requests if redis_url else None,
                   redis_round_trips_per_request=(
                       (trips - before["falcon_redis_round_trips_total"]) / requests
                       if redis_url and trips is not None else None),
                   loop_cpu_us_per_request=loop_s * 1e6 / requests)
        )  # fmt: skip
        print(f"  {name:<22} {mode:<9} {data['rps']:>9.0f} req/s  p99 {data['p99_ms']:.1f} ms",
              file=sys.stderr)  # fmt: skip
        if profile is not None:
            summary = summarise(profile.out, results[-1].cpu_us_per_request)
            profile.out.with_suffix(".summary").write_text(summary + "\n")
            print(summary, file=sys.stderr)
    return results


SERVERS = ("worker", "uvicorn")


def falcon_command(server: str, port: int) -> list[str]:
    """Falcon on 127.0.0.1:``port``: ``worker`` as deployed (``python -m falcon_platform.worker``,
    what `falcon up` and the Kubernetes pod run: Falcon's connection layer on uvicorn's
    httptools protocol), or ``uvicorn``: the stock uvicorn CLI with the app factory."""
    if server == "worker":
        return [sys.executable, "-m", "falcon_platform.worker", "--host", "127.0.0.1",
                "--port", str(port)]  # fmt: skip
    if server == "uvicorn":
        factory = "falcon_platform.serving.asgi:create_app_from_env"
        return [*UVICORN, "--port", str(port), "--factory", factory]
    raise ValueError(f"server: one of {SERVERS}, not {server!r}")


def measure_falcon(
    name: str,
    env: dict[str, str],
    log: Path,
    scenarios: list[tuple[str, str, str]],
    args: argparse.Namespace,
    keys: bool = False,
    server: str = "worker",
) -> tuple[list[Result], str]:
    """Start Falcon (``server``: see :func:`falcon_command`), measure each
    (path, wrk kind, mode), return the results and its final /metrics text."""
    redis_url = env.get("FALCON_REDIS_URL")
    port = free_port()
    proc = start(falcon_command(server, port), env, log, f"http://127.0.0.1:{port}/readyz")
    base = f"http://127.0.0.1:{port}"
    results: list[Result] = []
    try:
        for path, kind, mode in scenarios:
            target = name if kind == "infer" else name.replace("/infer", "/v2 infer")
            results += measure(target, proc.pid, f"{base}{path}", [(kind, mode)], args,
                               f"{base}/metrics", keys, redis_url)  # fmt: skip
        metrics = httpx.get(f"{base}/metrics", timeout=5).text
    finally:
        stop(proc)
    return results, metrics


def measure_supervised(home: Path, env: dict[str, str], args: argparse.Namespace) -> list[Result]:
    """`falcon up --workers N` on core 0: every worker's RSS and PSS at rest and under load."""
    port, control = free_port(), free_port()
    env = {**env, "FALCON_PORT": str(port), "FALCON_CONTROL_PORT": str(control),
           "FALCON_ADMIN_TOKEN": "bench-token-not-a-secret-0123456789"}  # fmt: skip
    log = home / "supervisor.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(["taskset", "-c", "0", str(FALCON), "up", "--workers",
                                 str(args.supervisor)], env=env, stdout=out, stderr=out)  # fmt: skip
    try:
        pids = _ready_worker_pids(control, args.supervisor, proc, log)
        time.sleep(2.0)  # let start-up settle before "at rest"
        rest = {pid: (rss_bytes(pid), pss_bytes(pid)) for pid in pids}
        url = f"http://127.0.0.1:{port}/infer"
        wrk(url, "infer", "unique", args.warmup, args.connections)
        with MemorySampler(pids) as memory:
            data = wrk(url, "infer", "unique", args.duration, args.connections)
        print(f"  falcon up -w {args.supervisor}: {data['rps']:>9.0f} req/s  "
              f"p99 {data['p99_ms']:.1f} ms (all workers)", file=sys.stderr)  # fmt: skip
        return [
            Result(f"falcon up worker {i + 1}/{len(pids)}", "unique", data["rps"] / len(pids),
                   data["p50_ms"], data["p99_ms"], data["non_2xx"], data["socket_errors"],
                   rest[pid][0] / MB, memory.peak_rss[pid] / MB, rest[pid][1] / MB,
                   memory.peak_pss[pid] / MB, 0.0)
            for i, pid in enumerate(pids)
        ]  # fmt: skip
    finally:
        stop(proc, signal.SIGINT)


def _ready_worker_pids(
    control: int, count: int, proc: subprocess.Popen[bytes], log: Path
) -> list[int]:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"falcon up exited ({proc.returncode}); see {log}")
        with contextlib.suppress(httpx.HTTPError, ValueError):
            status = httpx.get(f"http://127.0.0.1:{control}/status", timeout=2).json()
            ready = [w["pid"] for w in status.get("workers", []) if w.get("ready")]
            if len(ready) >= count:
                return [int(pid) for pid in ready]
        time.sleep(0.5)
    raise SystemExit(f"falcon up: {count} workers not ready in 180 s; see {log}")


@contextlib.contextmanager
def private_stores(home: Path) -> Iterator[tuple[str, str]]:
    """A private redis-server and PostgreSQL (schema applied), pinned to core 1."""
    from falcon_platform.testing.servers import running_postgres, running_redis

    with running_redis() as redis, running_postgres() as pg:
        assert redis.proc is not None
        postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])
        for pid in (redis.proc.pid, postmaster):
            subprocess.run(["taskset", "-a", "-p", "-c", "1", str(pid)], check=True,
                           capture_output=True)  # fmt: skip
        env = {**os.environ, "FALCON_HOME": str(home), "FALCON_DATABASE_URL": pg.url}
        subprocess.run([str(FALCON), "db", "upgrade"], env=env, check=True, capture_output=True)
        yield redis.url, pg.url


def attach_ratios(results: list[Result]) -> None:
    ceiling, ceiling_cpu = results[0].rps, results[0].cpu_us_per_request
    for r in results:
        r.ratio_to_ceiling = r.rps / ceiling if ceiling else 0.0
        r.cpu_ratio_to_ceiling = ceiling_cpu / r.cpu_us_per_request if r.cpu_us_per_request else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per scenario")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before each")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--home", type=Path, default=None, help="FALCON_HOME (default: temp)")
    parser.add_argument("--log-level", default="INFO", help="Falcon's FALCON_LOG_LEVEL")
    parser.add_argument(
        "--stores",
        choices=("embedded", "redis"),
        default="embedded",
        help="redis: /infer under four store configurations (see above)",
    )
    parser.add_argument(
        "--idempotency-keys",
        action="store_true",
        help="with --stores: every request carries a new Idempotency-Key",
    )
    parser.add_argument(
        "--server",
        choices=SERVERS,
        default="worker",
        help="Falcon's entry: worker (as deployed, default) or the stock uvicorn CLI; the "
        "ceiling always runs under the stock uvicorn CLI",
    )
    parser.add_argument(
        "--supervisor",
        type=int,
        default=0,
        metavar="N",
        help="also measure `falcon up --workers N` (memory per worker)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="py-spy each Falcon run: raw stacks and a summary per run into DIR",
    )
    parser.add_argument(
        "--compare-executors",
        action="store_true",
        help="also run /infer (unique) with FALCON_BATCH_EXECUTOR=thread",
    )
    args = parser.parse_args()  # fmt: skip
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
        results += measure("bare-asgi", proc.pid, f"http://127.0.0.1:{port}/infer",
                           [("infer", "unique")], args)  # fmt: skip
    finally:
        stop(proc)

    lost: list[str] = []
    if args.stores == "redis":
        print("stores: redis-server + PostgreSQL ...", file=sys.stderr)
        with private_stores(home / "stores") as (redis_url, pg_url):
            configs = [("embedded", {}), ("postgres log", {"FALCON_DATABASE_URL": pg_url}),
                       ("redis cache+idem", {"FALCON_REDIS_URL": redis_url}),
                       ("redis+postgres", {"FALCON_REDIS_URL": redis_url,
                                           "FALCON_DATABASE_URL": pg_url})]  # fmt: skip
            for name, extra in configs:
                sub = home / f"stores-{name.replace(' ', '-').replace('+', '-')}"
                sub.mkdir(parents=True, exist_ok=True)
                got, metrics = measure_falcon(
                    f"falcon {name}",
                    {**env, "FALCON_HOME": str(sub), **extra},
                    sub / "falcon.log",
                    [("/infer", "infer", "unique")],
                    args,
                    keys=args.idempotency_keys,
                    server=args.server,
                )
                results += got
                lost += [f"{name}: {line}" for line in metrics.splitlines()
                         if line.startswith("falcon_request_log_rows_lost")]  # fmt: skip
    else:
        print("falcon ...", file=sys.stderr)
        got, metrics = measure_falcon(
            "falcon /infer", env, home / "falcon.log",
            [("/infer", "infer", "unique"), ("/infer", "infer", "repeated"),
             ("/v2/models/sentiment/infer", "v2", "unique"),
             ("/v2/models/sentiment/infer", "v2", "repeated")], args, server=args.server,
        )  # fmt: skip
        results += got
        lost += [line for line in metrics.splitlines()
                 if line.startswith("falcon_request_log_rows_lost")]  # fmt: skip
        if args.compare_executors:
            print("falcon, predict_proba in a thread ...", file=sys.stderr)
            got, _ = measure_falcon("falcon /infer thr", {**env, "FALCON_BATCH_EXECUTOR": "thread"},
                                    home / "falcon-thread.log",
                                    [("/infer", "infer", "unique")], args,
                                    server=args.server)  # fmt: skip
            results += got
    if args.supervisor:
        print(f"falcon up --workers {args.supervisor} ...", file=sys.stderr)
        sup_home = home / "supervised"
        sup_home.mkdir(parents=True, exist_ok=True)
        results += measure_supervised(sup_home, {**env, "FALCON_HOME": str(sup_home)}, args)

    attach_ratios(results)
    if args.json:
        print(json.dumps({"connections": args.connections, "duration_s": args.duration,
                          "results": [asdict(r) for r in results], "request_log_lost": lost},
                         indent=2))  # fmt: skip
        return
    print_table(results, args, lost)


def print_table(results: list[Result], args: argparse.Namespace, lost: list[str]) -> None:
    print(f"\n{args.connections} connections, {args.duration:g} s per scenario, server on core 0, "
          "wrk on core 1\n")  # fmt: skip
    print(f"{'target':<26} {'texts':<9} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'ratio':>6} "
          f"{'cpu us':>7} {'loop us':>7} {'cpu ratio':>9} {'RSS rest/peak MB':>17} {'PSS rest/peak MB':>17} "
          f"{'non-2xx':>7} {'hits':>5} {'batch':>6} {'redis cmd/req':>13} {'trips/req':>9}")  # fmt: skip
    for r in results:
        hits = "" if r.cache_hit_ratio is None else f"{r.cache_hit_ratio:.0%}"
        batch = "" if r.mean_batch is None else f"{r.mean_batch:.1f}"
        cmds = "" if r.redis_commands_per_request is None else f"{r.redis_commands_per_request:.3f}"
        trips = ("" if r.redis_round_trips_per_request is None
                 else f"{r.redis_round_trips_per_request:.3f}")  # fmt: skip
        print(f"{r.target:<26} {r.scenario:<9} {r.rps:>9.0f} {r.p50_ms:>7.2f} {r.p99_ms:>7.2f} "
              f"{r.ratio_to_ceiling:>6.1%} {r.cpu_us_per_request:>7.1f} "
              f"{r.loop_cpu_us_per_request:>7.1f} "
              f"{r.cpu_ratio_to_ceiling:>9.1%} {r.rest_rss_mb:>8.0f}/{r.peak_rss_mb:<8.0f} "
              f"{r.rest_pss_mb:>8.0f}/{r.peak_pss_mb:<8.0f} "
              f"{r.non_2xx + r.socket_errors:>7} {hits:>5} {batch:>6} {cmds:>13} {trips:>9}")  # fmt: skip
    print("\nratio = req/s / the ceiling's req/s in this run; cpu ratio = the ceiling's CPU per "
          "request / this one's\n(robust when other processes share the core); loop us = the main "
          "thread's (event loop's) part of cpu us; hits = Falcon's "
          "response-cache hit ratio in the measured run;\nbatch = mean texts per model call; "
          "redis cmd/req = GET/MGET/SET Redis served per request (its commandstats); trips/req = "
          "Falcon's Redis round trips per request;\n"
          "`falcon up` rows: req/s is the total / workers, CPU not measured.")  # fmt: skip
    print("\n".join(lost))


if __name__ == "__main__":
    main()
