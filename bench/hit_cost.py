"""CPU per request of Falcon's app alone (no sockets, no uvicorn), builds alternating.

    .venv/bin/python bench/hit_cost.py                          # this checkout, repeated text
    .venv/bin/python bench/hit_cost.py --mode unique
    .venv/bin/python bench/hit_cost.py before:PYTHONPATH=/tmp/old/src after:   # A/B, alternating
    .venv/bin/python bench/hit_cost.py --profile out.pstats     # cProfile of one round

The real app (``create_app_from_env``: real model, SQLite request log and its shipper, in-process
cache, metrics, JSON access lines at INFO written to /dev/null) is driven as ASGI by 64
concurrent clients, each request in its own task as uvicorn runs it. ``repeated``: every request
sends one text (a cache hit after the first); ``unique``: texts as ``bench/wrk_infer.lua``'s.
Each variant runs in its own process (``name:VAR=value,...``; point ``PYTHONPATH`` at another
checkout's ``src`` to compare builds); rounds alternate the variants. Printed per variant: the
event loop's CPU per request (``thread_time`` of the loop thread) and the whole process's
(``process_time``: the shipper and log-flush threads too), and the same harness around a bare
ASGI function (reads the body, sends a constant): what the harness itself costs.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from v2_cost import asgi_call, body, text  # the sibling script: wrk_infer.lua's texts

REPEATED = "great screen but the battery died"


def scope_for(path: str, raw: bytes, tid: int) -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
        "query_string": b"", "root_path": "", "client": ("127.0.0.1", 5000 + tid),
        "server": ("127.0.0.1", 8000),
        "headers": [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json"),
                    (b"content-length", str(len(raw)).encode()), (b"user-agent", b"wrk")],
    }  # fmt: skip


async def client(
    app: Any, kind: str, mode: str, tid: int, run: str, n: int, statuses: list[int]
) -> None:
    path = "/infer" if kind == "infer" else "/v2/models/sentiment/infer"
    loop = asyncio.get_running_loop()
    for i in range(n):
        raw = body(kind, REPEATED if mode == "repeated" else text(i, tid, run))
        await loop.create_task(asgi_call(app, scope_for(path, raw, tid), raw, statuses))


async def one_round(app: Any, args: argparse.Namespace, run: str) -> tuple[float, float]:
    statuses: list[int] = []
    loop0, proc0 = time.thread_time(), time.process_time()
    await asyncio.gather(
        *(client(app, args.kind, args.mode, t, run, args.per_client, statuses)
          for t in range(args.clients))
    )  # fmt: skip
    loop_s, proc_s = time.thread_time() - loop0, time.process_time() - proc0
    bad = [s for s in statuses if s != 200]
    assert not bad, f"{len(bad)} non-200 answers, e.g. {bad[:3]}"
    return loop_s / len(statuses) * 1e6, proc_s / len(statuses) * 1e6


def child(args: argparse.Namespace) -> None:
    """One variant's rounds (this process): prints one JSON line per round.

    The loop is driven round by round (``run_until_complete``) so that ``--callgrind`` can
    count only the measured round: it runs inside ``Context.run``, the C function valgrind
    is told to collect in (``--toggle-collect=context_run``)."""
    import contextvars

    import uvloop

    sys.path.insert(0, str(Path(__file__).parent))
    from bare_asgi import app as bare

    from falcon_platform.serving.asgi import create_app_from_env

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    app = create_app_from_env()
    lifespan = app.router.lifespan_context(app)
    loop.run_until_complete(lifespan.__aenter__())
    target = bare if args.bare else app
    try:
        loop.run_until_complete(one_round(target, args, "warm"))
        if args.callgrind:
            contextvars.copy_context().run(
                loop.run_until_complete, one_round(target, args, f"cg-{time.time_ns()}")
            )
            return
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            loop.run_until_complete(one_round(target, args, "prof"))
            prof.disable()
            prof.dump_stats(args.profile)
            return
        for r in range(args.child_rounds):
            loop_us, proc_us = loop.run_until_complete(
                one_round(app, args, f"r{r}-{time.time_ns()}")
            )
            bare_us, _ = loop.run_until_complete(one_round(bare, args, f"b{r}"))
            print(json.dumps({"loop_us": loop_us, "proc_us": proc_us, "bare_us": bare_us}),
                  flush=True)  # fmt: skip
    finally:
        loop.run_until_complete(lifespan.__aexit__(None, None, None))
        loop.close()


def callgrind(cmd: list[str], env: dict[str, str], out: Path, args: argparse.Namespace) -> float:
    """The event loop's instructions per request in one round of ``cmd`` (a ``--child``)."""
    vg = ["valgrind", "--tool=callgrind", "--collect-atstart=no", "--toggle-collect=context_run",
          "--separate-threads=yes", f"--callgrind-out-file={out}"]  # fmt: skip
    subprocess.run([*vg, *cmd, "--callgrind"], env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True)  # fmt: skip
    main = out.with_name(out.name + "-01")  # thread 1: the event loop
    if args.keep:
        shutil.copy(main, args.keep)
        args.keep = None
    totals = [line for line in main.read_text().splitlines() if line.startswith("totals:")]
    return int(totals[0].split()[1]) / (args.clients * args.per_client)


def parse_variant(spec: str) -> tuple[str, dict[str, str]]:
    name, _, assignments = spec.partition(":")
    return name, dict(pair.split("=", 1) for pair in assignments.split(",") if pair)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", default=["this:"])
    parser.add_argument("--mode", choices=["repeated", "unique"], default="repeated")
    parser.add_argument("--kind", choices=["infer", "v2"], default="infer")
    parser.add_argument("--rounds", type=int, default=3, help="processes per variant")
    parser.add_argument("--child-rounds", type=int, default=3, help="rounds in each process")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--per-client", type=int, default=150)
    parser.add_argument("--profile", help="write a cProfile of one round here (one variant)")
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="count the event loop's instructions per request under valgrind instead (immune "
        "to other processes; ~1 min per variant): one round of --per-client 20 by default",
    )
    parser.add_argument("--keep", help="--callgrind: copy the first run's profile here")
    parser.add_argument(
        "--bare",
        action="store_true",
        help="drive bench/bare_asgi.py instead (the harness' own cost)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.callgrind and not args.child and args.per_client == 150:
        args.per_client = 20
    if args.child:
        child(args)
        return
    from falcon_platform.config.settings import Settings
    from falcon_platform.model.registry import ensure_model

    with tempfile.TemporaryDirectory(prefix="falcon-hitcost-") as tmp:  # removed at the end
        home = Path(tmp)
        model = os.environ.get("FALCON_MODEL_PATH") or str(ensure_model(Settings(home=home)))
        results: dict[str, list[dict[str, float]]] = {}
        variants = [parse_variant(v) for v in args.variants]
        for r in range(args.rounds):
            for name, extra in variants if r % 2 == 0 else variants[::-1]:
                run_home = home / f"{name}-{r}"
                run_home.mkdir()
                env = {**os.environ, "FALCON_HOME": str(run_home), "FALCON_MODEL_PATH": model,
                       "FALCON_LOG_LEVEL": "INFO", **extra}  # fmt: skip
                cmd = [sys.executable, __file__, "--child", "--mode", args.mode, "--kind",
                       args.kind, "--child-rounds", str(args.child_rounds), "--clients",
                       str(args.clients), "--per-client", str(args.per_client)]  # fmt: skip
                if args.profile:
                    cmd += ["--profile", args.profile]
                if args.bare:
                    cmd += ["--bare"]
                if args.callgrind:
                    count = callgrind(cmd, env, run_home / "callgrind.out", args)
                    results.setdefault(name, []).append({"instructions": count})
                    print(f"  {name:<10} {count:,.0f} instructions/request", file=sys.stderr)
                    continue
                out = subprocess.run(cmd, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, check=True)  # fmt: skip
                rows = [json.loads(line) for line in out.stdout.splitlines() if line]
                results.setdefault(name, []).extend(rows)
                if rows:
                    loops = " / ".join(f"{row['loop_us']:.1f}" for row in rows)
                    print(f"  {name:<10} loop µs {loops}", file=sys.stderr)
    for name, rows in results.items():
        if not rows:  # --profile: no rounds
            continue
        if args.callgrind:
            counts = " / ".join(f"{row['instructions']:,.0f}" for row in rows)
            print(f"{name:<10} {args.kind} {args.mode}: event loop {counts} instructions/request")
            continue
        med = {k: statistics.median(row[k] for row in rows) for k in rows[0]}
        print(f"{name:<10} {args.kind} {args.mode}: loop {med['loop_us']:.1f} µs/request, "
              f"process {med['proc_us']:.1f}, bare ASGI in the same harness {med['bare_us']:.1f} "
              f"({len(rows)} rounds)")  # fmt: skip
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
