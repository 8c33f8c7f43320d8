"""The load generator's own capacity: requests/s one core sends on schedule.

    .venv/bin/python bench/loadgen.py                  # ~1 min; prints a table
    .venv/bin/python bench/loadgen.py --json --rates 1000,2000,4000 --duration 5

Starts bench/bare_asgi.py (reads the body, answers a constant) under uvicorn pinned to core 0,
then, pinned to core 1 in a fresh process per step, runs `falcon_platform.loadtest` at each
rate for ``--duration`` seconds (open model, keep-alive, unique texts). For each step it prints
the achieved/target ratio, the generator's schedule lag (p50, p99: how late requests left
compared with their schedule) and its CPU per request. Baseline, same run: wrk (closed loop,
64 connections, one thread on core 1) against the same server, i.e. what the server can
answer at most; each rate is also shown as a fraction of it.

Capacity = the highest rate tried with lag p99 <= 2 ms and >= 99% of the requests sent inside
the window. It is a script, not a test: the numbers depend on the machine and on what else
runs (the load average is printed with them).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

LAG_P99_LIMIT_MS = 2.0
ACHIEVED_MIN = 0.99


def child(url: str, rate: float, duration: float) -> dict[str, Any]:
    """One step, in this process: run the generator and measure its own CPU."""
    from falcon_platform.loadtest import LoadOptions, LoadPlan, run_load

    before = resource.getrusage(resource.RUSAGE_SELF)
    result = run_load(LoadPlan.constant(rate, duration), url,
                      options=LoadOptions(texts="unique", connections=256))  # fmt: skip
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "rate": rate,
        "achieved_ratio": result.achieved_rate_ratio,
        "sent": result.sent,
        "dropped": result.dropped,
        "errors": result.errors,
        "lag_p50_ms": result.lag.p50_ms,
        "lag_p99_ms": result.lag.p99_ms,
        "latency_p50_ms": result.latency.p50_ms,
        "latency_p99_ms": result.latency.p99_ms,
        "cpu_us_per_request": cpu / max(1, result.sent) * 1e6,
        "cpu_share": cpu / duration,
    }


def start_server(port: int) -> subprocess.Popen[bytes]:
    cmd = ["taskset", "-c", "0", sys.executable, "-m", "uvicorn", "bare_asgi:app",
           "--app-dir", str(ROOT / "bench"), "--host", "127.0.0.1", "--port", str(port),
           "--no-access-log", "--log-level", "warning", "--loop", "uvloop", "--http", "httptools"]  # fmt: skip
    proc = subprocess.Popen(cmd)
    import httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.post(f"http://127.0.0.1:{port}/infer", content=b"{}").status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("bare_asgi did not start")


def wrk_ceiling(url: str, duration: int) -> float:
    """Closed-loop requests/s of the server (wrk, 64 connections, core 1)."""
    lua = ROOT / "bench" / "wrk_infer.lua"
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c64", f"-d{duration}s", "-s",
                          str(lua), url + "/infer", "--", "infer", "unique"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(match.group(1)) if match else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default="500,1000,2000,3000,4000,6000")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="nice value for the generator (root may go below 0: a shared "
        "machine's other processes then wait for it, not it for them)",
    )
    parser.add_argument("--child", nargs=3, metavar=("URL", "RATE", "DURATION"))
    args = parser.parse_args()
    if args.child:
        url, rate, duration = args.child
        print(json.dumps(child(url, float(rate), float(duration))))
        return

    sys.path.insert(0, str(ROOT / "src"))
    from falcon_platform.testing.net import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(port)
    try:
        ceiling = wrk_ceiling(url, max(2, round(args.duration)))
        steps = []
        for rate in (float(r) for r in args.rates.split(",")):
            out = subprocess.run(["nice", "-n", str(args.nice), "taskset", "-c", "1",
                                  sys.executable, __file__, "--child", url, str(rate),
                                  str(args.duration)],
                                 capture_output=True, text=True, check=True).stdout  # fmt: skip
            step = json.loads(out.strip().splitlines()[-1])
            step["fraction_of_ceiling"] = rate / ceiling if ceiling else None
            steps.append(step)
            time.sleep(0.5)
    finally:
        server.terminate()
        server.wait(10)
    good = [s["rate"] for s in steps
            if s["lag_p99_ms"] <= LAG_P99_LIMIT_MS and s["achieved_ratio"] >= ACHIEVED_MIN]  # fmt: skip
    report = {
        "load_average": os.getloadavg(),
        "server_ceiling_rps": ceiling,
        "capacity_rps": max(good) if good else None,
        "criterion": f"lag p99 <= {LAG_P99_LIMIT_MS} ms and achieved >= {ACHIEVED_MIN:.0%}",
        "nice": args.nice,
        "steps": steps,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"server ceiling (wrk -c64, closed loop): {ceiling:,.0f} req/s; load average "
          f"{report['load_average'][0]:.2f}; generator nice {args.nice}")  # fmt: skip
    print(f"{'rate':>7} {'of ceiling':>10} {'achieved':>9} {'lag p50':>8} {'lag p99':>8} "
          f"{'lat p50':>8} {'lat p99':>8} {'cpu/req':>8} {'cpu':>5}")  # fmt: skip
    for s in steps:
        frac = s["fraction_of_ceiling"]
        print(f"{s['rate']:>7.0f} {frac:>10.0%} {s['achieved_ratio']:>9.2%} "
              f"{s['lag_p50_ms']:>6.2f}ms {s['lag_p99_ms']:>6.2f}ms {s['latency_p50_ms']:>6.2f}ms "
              f"{s['latency_p99_ms']:>6.2f}ms {s['cpu_us_per_request']:>6.0f}us "
              f"{s['cpu_share']:>5.0%}")  # fmt: skip
    cap = report["capacity_rps"]
    print(f"generator capacity on one core ({report['criterion']}): "
          f"{f'{cap:,.0f} req/s' if cap else 'below the lowest rate tried'}")  # fmt: skip


if __name__ == "__main__":
    main()
