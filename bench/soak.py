"""Soak: one Falcon worker under full load for minutes; memory, spool and request log over time.

    .venv/bin/python bench/soak.py --minutes 10          # a table, one line per slice
    .venv/bin/python bench/soak.py --minutes 10 --json

Same set-up as ``bench/run.py`` (server on core 0, wrk on core 1, 64 connections, a new text
per request, request log, metrics and access log on). Load runs in slices of ``--slice``
seconds; after each it prints requests/s, p99, the worker's RSS, the request-log rows still
on local disk, and the lost-row counter. After the last slice the worker is stopped with
SIGTERM and the request-log table is counted: it must hold exactly one row per 2xx the
server counted. Exit status 1 if it does not, or if any row was lost.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
from procmem import pss_bytes, rss_bytes
from run import (  # the sibling script (bench/ is on sys.path)
    free_port,
    metric_total,
    start,
    stop,
    wrk,
)


@dataclass
class Slice:
    minute: float
    rps: float
    p99_ms: float
    requests: int
    non_2xx: int
    rss_mb: float
    pss_mb: float
    rows_pending: float
    rows_lost: float
    cache_entries: int


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--slice", type=float, default=30.0, help="seconds per load slice")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from falcon_platform.config.settings import Settings
    from falcon_platform.model.registry import ensure_model
    from falcon_platform.stores import database

    home = Path(tempfile.mkdtemp(prefix="falcon-soak-"))
    model_path = Path(os.environ.get("FALCON_MODEL_PATH") or ensure_model(Settings(home=home)))
    env = {**os.environ, "FALCON_HOME": str(home), "FALCON_MODEL_PATH": str(model_path)}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    admin = home / "admin.sock"  # the worker as deployed; /readyz details are private
    proc = start([sys.executable, "-m", "falcon_platform.worker", "--host", "127.0.0.1",
                  "--port", str(port), "--admin-socket", str(admin)], env,
                 home / "falcon.log", f"{base}/readyz")  # fmt: skip
    private = httpx.Client(transport=httpx.HTTPTransport(uds=str(admin)), base_url="http://w")
    slices: list[Slice] = []
    answered = 0
    started = time.monotonic()
    try:
        while time.monotonic() - started < args.minutes * 60:
            data = wrk(f"{base}/infer", "infer", "unique", args.slice, args.connections)
            text = httpx.get(f"{base}/metrics", timeout=5).text
            s = Slice(
                minute=round((time.monotonic() - started) / 60, 2),
                rps=data["rps"],
                p99_ms=data["p99_ms"],
                requests=int(data["requests"]),
                non_2xx=int(data["non_2xx"]),
                rss_mb=rss_bytes(proc.pid) / 2**20,
                pss_mb=pss_bytes(proc.pid) / 2**20,
                rows_pending=metric_total(text, "falcon_request_log_rows_pending"),
                rows_lost=metric_total(text, "falcon_request_log_rows_lost_total"),
                cache_entries=private.get("/readyz", timeout=5).json()["dependencies"]["cache"][
                    "details"
                ]["entries"],
            )
            slices.append(s)
            if not args.json:
                print(f"{s.minute:6.2f} min  {s.rps:7.0f} req/s  p99 {s.p99_ms:6.1f} ms  "
                      f"RSS {s.rss_mb:6.1f} MB  PSS {s.pss_mb:6.1f} MB  pending rows {s.rows_pending:6.0f}  "
                      f"lost {s.rows_lost:.0f}  cache {s.cache_entries}  non-2xx {s.non_2xx}",
                      flush=True)  # fmt: skip
        time.sleep(0.5)  # replies still in flight when wrk stopped
        # The server's own count of 2xx: wrk does not count replies that arrive after its
        # clock stops, and the server logs those too.
        final = httpx.get(f"{base}/metrics", timeout=5).text
        answered = int(metric_total(final, "falcon_requests_total",
                                    lambda labels: labels["status"].startswith("2")))  # fmt: skip
    finally:
        stop(proc)

    engine = database.make_engine(Settings(home=home))
    with engine.connect() as conn:
        rows = int(conn.exec_driver_sql("SELECT count(*) FROM request_log").scalar_one())
    engine.dispose()
    half = slices[len(slices) // 2 :]
    span = (half[-1].minute - half[0].minute) if len(half) > 1 else 0.0
    slope = (half[-1].rss_mb - half[0].rss_mb) / span if span else 0.0
    summary = {
        "minutes": round((time.monotonic() - started) / 60, 2),
        "answered_2xx": answered,
        "request_log_rows": rows,
        "rows_lost": slices[-1].rows_lost if slices else 0.0,
        "rss_mb_first": round(slices[0].rss_mb, 1) if slices else 0.0,
        "rss_mb_last": round(slices[-1].rss_mb, 1) if slices else 0.0,
        "pss_mb_last": round(slices[-1].pss_mb, 1) if slices else 0.0,
        "rss_mb_per_min_second_half": round(slope, 2),
        "ok": rows == answered and all(s.rows_lost == 0 for s in slices),
    }
    if args.json:
        print(json.dumps({"slices": [asdict(s) for s in slices], "summary": summary}, indent=2))
    else:
        print("\n" + "  ".join(f"{k}={v}" for k, v in summary.items()))
    if not summary["ok"]:
        print("soak FAILED: request-log rows do not match the answered requests, or rows were "
              "lost", file=sys.stderr)  # fmt: skip
        sys.exit(1)


if __name__ == "__main__":
    main()
