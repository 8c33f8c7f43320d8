"""Idle-connection flood against a real `falcon up --workers 2`, with a well-behaved client.

    .venv/bin/python bench/flood.py                          # 30,000 sockets, 60 s (~2.5 min)
    .venv/bin/python bench/flood.py --sockets 45000 --seconds 120 --json

A flooder process (its descriptor limit raised; it must run as root or with a hard limit
above ``--sockets``) opens idle TCP connections from 127.0.0.2, 127.0.0.3 and 127.0.0.4,
keeps ``--sockets`` of them open (reopening any the server closes) and never sends a byte.
Meanwhile a well-behaved client on 127.0.0.1 sends ``--rps`` POST /infer on fresh connections
(open model: on schedule whatever the server does; ``--keepalive`` reuses connections).
Printed: workers killed or restarted during the flood (goal 0), the well-behaved requests'
status codes and p99 before and during the flood, the descriptors each worker held (peak),
and what the flooder saw (opened, closed by the server, connect errors).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import resource
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

SOURCES = ("127.0.0.2", "127.0.0.3", "127.0.0.4")


def flooder(port: int, source: str, target: int, seconds: float, rate: float) -> None:
    """Hold ``target`` idle connections from ``source`` for ``seconds``; print a JSON line."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = target + 256
    if soft < want:
        try:  # above the hard limit needs CAP_SYS_RESOURCE (root in a container may lack it)
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            target = min(target, hard - 256)
    sel = selectors.DefaultSelector()
    stats = {"opened": 0, "closed_by_server": 0, "connect_errors": 0, "peak_open": 0}
    open_now = 0
    started = time.monotonic()
    end = started + seconds
    budget = 0.0
    last = started
    while True:
        now = time.monotonic()
        if now >= end:
            break
        budget = min(budget + (now - last) * rate, rate)  # at most a second's worth at once
        last = now
        while open_now < target and budget >= 1:
            budget -= 1
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                sock.bind((source, 0))
                code = sock.connect_ex(("127.0.0.1", port))
            except OSError:
                code = -1
            if code not in (0, errno.EINPROGRESS):
                stats["connect_errors"] += 1
                sock.close()
                break
            sel.register(sock, selectors.EVENT_READ)
            open_now += 1
            stats["opened"] += 1
        stats["peak_open"] = max(stats["peak_open"], open_now)
        for key, _ in sel.select(timeout=0.01):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:  # the server closed it (evicted, timed out, refused): reopen later
                sel.unregister(sock)
                sock.close()
                open_now -= 1
                stats["closed_by_server"] += 1
    stats["open_at_end"] = open_now
    stats["target"] = target
    print("FLOODJSON " + json.dumps(stats), flush=True)


def summarize(tally: Any) -> dict[str, Any]:
    """A LoadGenerator's tally (falcon_platform.testing.supervisor.LoadTally) as plain data."""
    return {
        "requests": tally.total,
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "transport_errors": dict(tally.errors),
        "p99_ms": round(tally.p99_ms, 1),
    }


def listen_overflows() -> dict[str, int]:
    """The kernel's counts of connections dropped because an accept queue was full."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], map(int, values.split()[1:]), strict=True))
            return {k: table.get(k, 0) for k in ("ListenOverflows", "ListenDrops")}
    return {}


def fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=30_000, help="idle connections to hold")
    parser.add_argument("--seconds", type=float, default=60.0, help="flood duration")
    parser.add_argument("--rate", type=float, default=5000.0, help="new flood sockets per second")
    parser.add_argument("--rps", type=float, default=50.0, help="the well-behaved client's rate")
    parser.add_argument("--baseline", type=float, default=15.0, help="seconds before the flood")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--keepalive",
        action="store_true",
        help="the well-behaved client reuses its connections (default: a fresh one per request)",
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--flooder", nargs=5, metavar=("PORT", "SOURCE", "N", "SECONDS", "RATE"),
                        help=argparse.SUPPRESS)  # fmt: skip
    args = parser.parse_args()
    if args.flooder:
        port, source, n, seconds, rate = args.flooder
        flooder(int(port), source, int(n), float(seconds), float(rate))
        return

    from falcon_platform.testing.supervisor import LoadGenerator, start_supervisor, train_model

    work = Path(tempfile.mkdtemp(prefix="falcon-flood-"))
    model = Path(os.environ.get("FALCON_MODEL_PATH") or train_model(work / "model-home"))
    print(f"falcon up --workers {args.workers} ...", file=sys.stderr)
    sup = start_supervisor(work, workers=args.workers, model_dir=model)
    floods: list[subprocess.Popen[str]] = []
    try:
        pids = {w["worker"]: w["pid"] for w in sup.status()["workers"]}
        client = {"keep_alive": True} if args.keepalive else {}  # (older builds: no keyword)
        events_before = len(sup.events())
        print(f"baseline {args.baseline:g} s at {args.rps:g} req/s ...", file=sys.stderr)
        with LoadGenerator(sup.url, rps=args.rps, **client) as load:
            time.sleep(args.baseline)
        base = load.result()
        print(f"flood: {args.sockets} sockets for {args.seconds:g} s ...", file=sys.stderr)
        share = args.sockets // len(SOURCES)  # one process per address: each under its limit
        floods += [
            subprocess.Popen(
                [sys.executable, __file__, "--flooder", str(sup.port), source, str(share),
                 str(args.seconds), str(args.rate / len(SOURCES))],
                stdout=subprocess.PIPE, text=True,
            )
            for source in SOURCES
        ]  # fmt: skip
        peak: dict[str, int] = dict.fromkeys(pids, 0)
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                for worker, pid in pids.items():
                    peak[worker] = max(peak[worker], fds(pid))
                stop.wait(0.25)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        time.sleep(min(5.0, args.seconds / 4))  # let the flood build before measuring
        overflows_before = listen_overflows()
        with LoadGenerator(sup.url, rps=args.rps, **client) as load:
            while any(f.poll() is None for f in floods):
                time.sleep(0.2)
        during = load.result()
        overflows = {k: v - overflows_before.get(k, 0) for k, v in listen_overflows().items()}
        stop.set()
        sampler.join()
        flood_stats: dict[str, int] = {}
        for f in floods:
            out = f.stdout.read() if f.stdout else ""
            for line in out.splitlines():
                if line.startswith("FLOODJSON "):
                    for key, value in json.loads(line[len("FLOODJSON ") :]).items():
                        flood_stats[key] = flood_stats.get(key, 0) + value
        after_pids = {w["worker"]: w["pid"] for w in sup.status()["workers"]}
        new_events = sup.events()[events_before:] if len(sup.events()) > events_before else []
        kills = [e for e in new_events if e["kind"] in ("worker_exited", "liveness_kill")]
    finally:
        for f in floods:
            if f.poll() is None:
                f.kill()
        sup.stop()
    result = {
        "workers": args.workers,
        "flood": {"sockets": args.sockets, "seconds": args.seconds, "sources": SOURCES,
                  **flood_stats},
        "workers_killed_or_exited": len(kills),
        "worker_pids_changed": sorted(w for w in pids if after_pids.get(w) != pids[w]),
        "peak_descriptors_per_worker": peak,
        "kernel_accept_queue_drops": overflows,
        "well_behaved_connections": "kept alive" if args.keepalive else "fresh per request",
        "well_behaved_before": summarize(base),
        "well_behaved_during": summarize(during),
    }  # fmt: skip
    if args.json:
        print(json.dumps(result, indent=2))
        return
    b, d = result["well_behaved_before"], result["well_behaved_during"]
    print(
        f"\nflood: {args.sockets} idle sockets from {', '.join(SOURCES)} for {args.seconds:g} s; "
        f"opened {flood_stats.get('opened')}, closed by the server "
        f"{flood_stats.get('closed_by_server')}, connect errors "
        f"{flood_stats.get('connect_errors')}, peak held {flood_stats.get('peak_open')}"
    )
    print(
        f"workers killed or exited: {result['workers_killed_or_exited']} (pids changed: "
        f"{result['worker_pids_changed'] or 'none'})"
    )
    print(f"peak descriptors per worker: {peak}")
    print(
        f"kernel accept-queue drops during the flood: {overflows} (a dropped SYN is retried "
        "after 1 s, then 3 s: the latency of fresh connections)"
    )
    print(
        f"well-behaved client, {args.rps:g} req/s from 127.0.0.1, connections "
        f"{result['well_behaved_connections']}:"
    )
    print(
        f"  before: {b['requests']} requests {b['statuses']} errors {b['transport_errors']} "
        f"p99 {b['p99_ms']} ms"
    )
    print(f"  during: {d['requests']} requests {d['statuses']} errors {d['transport_errors']} "
          f"p99 {d['p99_ms']} ms")  # fmt: skip


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
