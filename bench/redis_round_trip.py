"""Client cost of one Redis round trip as the worker makes it: CPU time and instructions.

    .venv/bin/python bench/redis_round_trip.py                 # CPU us per round trip, 3 ways
    .venv/bin/python bench/redis_round_trip.py --callgrind     # + instructions (valgrind)
    PYTHONPATH=/tmp/nohiredis .venv/bin/python bench/redis_round_trip.py   # without hiredis

One round trip = what a tick of 32 unique /infer requests sends: an MGET of 32 cache keys and
32 cache fills (24-byte values, PX 600000). Three ways to send it, against a private
redis-server:

- ``pipeline``: redis-py's pool + ``Pipeline`` (MGET + 32 ``SET .. PX``);
- ``direct``: one connection of our own, packed commands written and replies read directly;
- ``direct+eval``: the same, the 32 fills as one ``EVAL`` (what ``TickPipeline`` sends).

CPU time (``time.process_time``) moves with the machine's load; ``--callgrind`` also counts
the instructions the client executes per round trip, which does not: each way runs under
``valgrind --tool=callgrind`` twice (N and 2N round trips) and the difference is divided by N,
so start-up cancels out. Hiding hiredis (a ``hiredis`` package that raises ImportError, first
on PYTHONPATH) measures redis-py's pure-Python parser instead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

K = 32
TTL_MS = 600_000
WAYS = ("pipeline", "direct", "direct+eval")


def commands(way: str) -> list[tuple[Any, ...]]:
    from falcon_platform.stores.redis_pipeline import Op, plan_round_trip

    keys = [f"falcon:cache:v1:{i:064x}" for i in range(K)]
    ops = [Op("get", key) for key in keys] + [Op("set", key, b"x" * 24, TTL_MS) for key in keys]
    if way == "direct+eval":
        return plan_round_trip(ops).commands  # what the worker sends
    return [("MGET", *keys), *(("SET", key, b"x" * 24, "PX", TTL_MS) for key in keys)]


async def run(url: str, way: str, rounds: int) -> float:
    """CPU seconds per round trip over ``rounds`` (after one warm-up)."""
    from redis.asyncio import BlockingConnectionPool, Redis

    pool = BlockingConnectionPool.from_url(url, max_connections=4)
    client = Redis(connection_pool=pool)
    cmds = commands(way)
    conn = pool.connection_class(**{**pool.connection_kwargs, "socket_timeout": None})
    await conn.connect()  # type: ignore[no-untyped-call]

    async def via_pipeline() -> list[Any]:
        pipe = client.pipeline(transaction=False)
        for command in cmds:
            pipe.execute_command(*command)
        replies: list[Any] = await pipe.execute()
        return replies

    async def direct() -> list[Any]:
        await conn.send_packed_command(conn.pack_commands(cmds), check_health=False)
        return [await conn.read_response() for _ in cmds]

    send: Callable[[], Awaitable[list[Any]]] = via_pipeline if way == "pipeline" else direct
    await send()
    started = time.process_time()
    for _ in range(rounds):
        await send()
    spent = time.process_time() - started
    await conn.disconnect()
    await client.aclose()
    return spent / rounds


def instructions(url: str, way: str, rounds: int) -> float:
    """Instructions per round trip: callgrind totals at 2N minus at N, over N."""
    totals = []
    for n in (rounds, 2 * rounds):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "callgrind.out"
            subprocess.run(
                ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                 sys.executable, __file__, "--child", url, way, str(n)],
                check=True, capture_output=True, timeout=1800,
            )  # fmt: skip
            summary = re.search(r"^summary:\s+(\d+)", out.read_text(), re.MULTILINE)
            assert summary is not None, "no summary line in the callgrind output"
            totals.append(int(summary.group(1)))
    return (totals[1] - totals[0]) / rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2000, help="round trips per measurement")
    parser.add_argument("--callgrind", action="store_true", help="also count instructions")
    parser.add_argument("--callgrind-rounds", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", nargs=3, metavar=("URL", "WAY", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # one measured run, under valgrind
        url, way, n = args.child
        asyncio.run(run(url, way, int(n)))
        return

    from redis.utils import HIREDIS_AVAILABLE

    from falcon_platform.testing.servers import running_redis

    results: dict[str, dict[str, float]] = {}
    with running_redis() as server:
        for way in WAYS:
            cpu = min(asyncio.run(run(server.url, way, args.rounds)) for _ in range(3))
            results[way] = {"cpu_us": cpu * 1e6}
            if args.callgrind:
                results[way]["instructions"] = instructions(server.url, way, args.callgrind_rounds)
    if args.json:
        print(json.dumps({"hiredis": HIREDIS_AVAILABLE, "per_round_trip": results}, indent=2))
        return
    print(f"one round trip = MGET of {K} keys + {K} cache fills; hiredis: {HIREDIS_AVAILABLE}")
    for way, r in results.items():
        extra = f"  {r['instructions'] / 1e6:.2f} M instructions" if "instructions" in r else ""
        print(f"{way:<12} {r['cpu_us']:>8.0f} us CPU (best of 3){extra}  "
              f"= {r['cpu_us'] / K:.1f} us per request")  # fmt: skip


if __name__ == "__main__":
    main()
