"""A/B: Falcon servers that differ only in environment, measured alternately in one run.

    .venv/bin/python bench/ab.py --rounds 3 \\
        before:FALCON_REQUEST_LOG_SHIPPER_NICE=0 after:FALCON_REQUEST_LOG_SHIPPER_NICE=5
    .venv/bin/python bench/ab.py --mode repeated base: nolog:FALCON_LOG_LEVEL=WARNING
    .venv/bin/python bench/ab.py before:PYTHONPATH=/path/to/other/checkout/src after:
        # two versions of the code: the server imports falcon_platform from PYTHONPATH first

Each variant is ``name:VAR=value,VAR=value`` (``name:`` for no change). Two builds: point one
variant's ``PYTHONPATH`` at another checkout's ``src`` (``git archive <commit> src | tar -x``);
each variant runs as deployed, ``python -m falcon_platform.worker`` (``--server uvicorn``: the
stock uvicorn CLI instead; ``--server worker,uvicorn``: both, alternating in every round);
``--stores redis`` (or ``redis+postgres``) starts a private redis-server and PostgreSQL on core 1
and points every variant at them, and adds Redis commands and round trips per request. Every round starts each
variant's server afresh (same pinning and load as ``bench/run.py``: server on core 0, wrk on
core 1, 64 connections, /infer) and measures it once; alternating rounds cancel the machine's
drift. Prints every run, then the medians per variant.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import httpx
from run import (  # the sibling script
    falcon_command,
    free_port,
    measure,
    metric_total,
    private_stores,
    start,
    stop,
)


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    """``"name:A=1,B=2"`` -> ("name", {"A": "1", "B": "2"})."""
    name, _, assignments = text.partition(":")
    env = dict(pair.split("=", 1) for pair in assignments.split(",") if pair)
    return name, env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="+", help="name:VAR=value,... (at least two)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mode", choices=["unique", "repeated"], default="unique")
    parser.add_argument(
        "--kinds",
        default="infer",
        help="comma-separated endpoints to measure each variant on: infer, v2 (both: every "
        "round measures each variant on each, order alternating; reported as 'name kind')",
    )
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--server",
        default="worker",
        help="uvicorn (the CLI with the ASGI factory), worker (`python -m "
        "falcon_platform.worker`, as deployed: Falcon's connection layer included), or both "
        "comma-separated: every round measures each variant under each, order alternating; "
        "reported as 'name server'",
    )
    parser.add_argument(
        "--stores",
        choices=["embedded", "redis", "redis+postgres"],
        default="embedded",
        help="point every variant at a private redis-server (and PostgreSQL)",
    )
    args = parser.parse_args()

    from falcon_platform.config.settings import Settings
    from falcon_platform.model.registry import ensure_model

    variants = dict(parse_variant(v) for v in args.variants)
    home = Path(tempfile.mkdtemp(prefix="falcon-ab-"))
    model = Path(os.environ.get("FALCON_MODEL_PATH") or ensure_model(Settings(home=home)))
    with contextlib.ExitStack() as stack:
        stores: dict[str, str] = {}
        if args.stores != "embedded":
            redis_url, pg_url = stack.enter_context(private_stores(home / "stores"))
            stores["FALCON_REDIS_URL"] = redis_url
            if args.stores == "redis+postgres":
                stores["FALCON_DATABASE_URL"] = pg_url
        runs = run_rounds(args, variants, home, model, stores)
    report(args, runs)


def run_rounds(
    args: argparse.Namespace,
    variants: dict[str, dict[str, str]],
    home: Path,
    model: Path,
    stores: dict[str, str],
) -> dict[str, list[dict[str, float]]]:
    kinds = args.kinds.split(",")
    servers = args.server.split(",")
    if not set(servers) <= {"uvicorn", "worker"}:
        raise SystemExit(f"--server: uvicorn, worker or both, not {args.server!r}")
    runs: dict[str, list[dict[str, float]]] = {}
    for round_ in range(args.rounds):
        order = kinds if round_ % 2 == 0 else kinds[::-1]
        server_order = servers if round_ % 2 == 0 else servers[::-1]
        plan = ((v, k, s) for v in variants.items() for s in server_order for k in order)
        for (name, extra), kind, server in plan:
            label = " ".join([name, *([kind] if len(kinds) > 1 else []),
                              *([server] if len(servers) > 1 else [])])  # fmt: skip
            path = "/infer" if kind == "infer" else "/v2/models/sentiment/infer"
            run_home = home / f"{name}-{kind}-{server}-{round_}"
            run_home.mkdir()
            env = {**os.environ, "FALCON_HOME": str(run_home), "FALCON_MODEL_PATH": str(model),
                   **stores, **extra}  # fmt: skip
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            proc = start(falcon_command(server, port), env, run_home / "falcon.log",
                         f"{base}/readyz")  # fmt: skip
            try:
                [r] = measure(label, proc.pid, f"{base}{path}", [(kind, args.mode)], args,
                              f"{base}/metrics", redis_url=env.get("FALCON_REDIS_URL"))  # fmt: skip
                metrics = httpx.get(f"{base}/metrics", timeout=5).text
                lost = metric_total(metrics, "falcon_request_log_rows_lost_total")
            finally:
                stop(proc)
            runs.setdefault(label, []).append({"rps": r.rps, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms,
                               "cpu_us": r.cpu_us_per_request,
                               "loop_cpu_us": r.loop_cpu_us_per_request, "non_2xx": r.non_2xx,
                               "rows_lost": lost, "mean_batch": r.mean_batch or 0.0,
                               "peak_rss_mb": r.peak_rss_mb, "peak_pss_mb": r.peak_pss_mb,
                               "redis_cmd_per_req": r.redis_commands_per_request or 0.0,
                               "redis_trips_per_req": r.redis_round_trips_per_request or 0.0,
                               "load_avg_1m": os.getloadavg()[0]})  # fmt: skip
    return runs


def report(args: argparse.Namespace, runs: dict[str, list[dict[str, float]]]) -> None:
    summary = {
        name: {key: statistics.median(run[key] for run in rows) for key in rows[0]}
        for name, rows in runs.items()
    }
    if args.json:
        print(json.dumps({"runs": runs, "medians": summary}, indent=2))
        return
    print(f"\n{args.kinds} {args.mode}, {args.rounds} rounds, medians:", file=sys.stdout)
    for name, m in summary.items():
        p99s = ", ".join(f"{run['p99_ms']:.1f}" for run in runs[name])
        print(f"{name:<12} {m['rps']:>8.0f} req/s  p99 {m['p99_ms']:5.1f} ms ({p99s})  "
              f"CPU {m['cpu_us']:.0f} us/req (loop {m['loop_cpu_us']:.0f})  batch {m['mean_batch']:.1f}  peak RSS/PSS "
              f"{m['peak_rss_mb']:.0f}/{m['peak_pss_mb']:.0f} MB  non-2xx {m['non_2xx']:.0f}  "
              f"rows lost {m['rows_lost']:.0f}  redis cmd/req {m['redis_cmd_per_req']:.3f}  "
              f"trips/req {m['redis_trips_per_req']:.3f}  load {m['load_avg_1m']:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
