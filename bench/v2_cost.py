"""CPU per request of Falcon's app alone, /infer against v2, alternating in one process.

    .venv/bin/python bench/v2_cost.py                     # ~20 s; pin it: taskset -c 0 ...
    .venv/bin/python bench/v2_cost.py --profile v2        # cProfile of one v2 round, top 30
    .venv/bin/python bench/v2_cost.py --parts             # the protocol's pure functions alone

No sockets, no uvicorn: the real app (``create_app_from_env``: real model, SQLite request log,
in-process cache) is driven as ASGI by 64 concurrent clients, each sending the same unique
texts as ``bench/wrk_infer.lua`` (so the micro-batcher sees batches as under wrk). Rounds
alternate /infer and /v2/models/<name>/infer; CPU time of this thread (``thread_time``) per
request, so other processes on a shared machine move the numbers less than wall time would.
The shipper thread's CPU is not counted (it is the same for both endpoints).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import statistics
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

WORDS = ["great", "terrible", "battery", "screen", "service", "slow", "fast", "not", "bad",
         "love", "refund", "okay", "delivery", "food", "app", "support", "price"]  # fmt: skip


def text(counter: int, tid: int, run: str) -> str:
    """As ``bench/wrk_infer.lua``'s unique mode."""
    n = len(WORDS)
    return (
        f"{WORDS[counter % n]} {WORDS[(counter * 7) % n]} {WORDS[(counter * 13) % n]} review "
        f"{counter} t{tid} r{run}"
    )


def body(kind: str, t: str) -> bytes:
    if kind == "v2":
        return (
            b'{"inputs":[{"name":"text","shape":[1],"datatype":"BYTES","data":["'
            + t.encode()
            + b'"]}]}'
        )
    return b'{"text":"' + t.encode() + b'"}'


def asgi_call(
    app: Any, scope: dict[str, Any], raw: bytes, statuses: list[int]
) -> Coroutine[Any, Any, None]:
    """One request to ``app`` as uvicorn makes it: the whole body in one message, then the
    status of the answer appended to ``statuses``; the caller awaits it (or runs it as a task)."""
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": raw, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    result: Coroutine[Any, Any, None] = app(scope, receive, send)
    return result


async def client(app: Any, kind: str, tid: int, run: str, n: int, statuses: list[int]) -> None:
    path = "/infer" if kind == "infer" else "/v2/models/sentiment/infer"
    for i in range(n):
        raw = body(kind, text(i, tid, run))
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
            "root_path": "", "client": ("127.0.0.1", 5000 + tid), "server": ("127.0.0.1", 8000),
            "headers": [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json"),
                        (b"content-length", str(len(raw)).encode())],
        }  # fmt: skip
        await asgi_call(app, scope, raw, statuses)


async def one_round(app: Any, kind: str, run: str, per_client: int, clients: int) -> float:
    statuses: list[int] = []
    start = time.thread_time()
    await asyncio.gather(*(client(app, kind, t, run, per_client, statuses) for t in range(clients)))
    spent = time.thread_time() - start
    bad = [s for s in statuses if s != 200]
    assert not bad, f"{len(bad)} non-200 answers, e.g. {bad[:3]}"
    return spent / len(statuses) * 1e6


async def main_async(args: argparse.Namespace) -> None:
    from falcon_platform.serving.asgi import create_app_from_env

    app = create_app_from_env()
    async with app.router.lifespan_context(app):
        await one_round(app, "infer", "warm-i", 20, args.clients)
        await one_round(app, "v2", "warm-v", 20, args.clients)
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            await one_round(app, args.profile, "prof", args.per_client, args.clients)
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(30)
            return
        results: dict[str, list[float]] = {"infer": [], "v2": []}
        for r in range(args.rounds):
            for kind in ("infer", "v2") if r % 2 == 0 else ("v2", "infer"):
                results[kind].append(
                    await one_round(app, kind, f"{kind}{r}", args.per_client, args.clients)
                )
        for kind, values in results.items():
            runs = " / ".join(f"{v:.1f}" for v in values)
            print(
                f"{kind:6s} µs CPU per request (loop thread): median {statistics.median(values):.1f}"
                f"  ({runs})"
            )
        print(f"load average {os.getloadavg()[0]:.1f}")


def parts() -> None:
    """CPU µs per call of each protocol's parse and render (best of 5 x 20k calls)."""
    import timeit

    import orjson

    from falcon_platform.serving.v2 import parse_v2_infer, render_v2_response
    from falcon_platform.serving.validation import parse_infer

    t = text(123, 3, "parts")
    v2_raw, infer_raw = body("v2", t), body("infer", t)
    request = parse_v2_infer(v2_raw, None, max_chars=5000, max_items=64, model_name="sentiment")
    labels, row = ("negative", "neutral", "positive"), [0.1234567, 0.2345678, 0.6419755]
    pred = {
        "prediction": "positive",
        "confidence": row[2],
        "probabilities": dict(zip(labels, row, strict=True)),
    }
    calls = {
        "v2 parse": lambda: parse_v2_infer(
            v2_raw, None, max_chars=5000, max_items=64, model_name="sentiment"
        ),
        "v2 render": lambda: render_v2_response(
            model_name="sentiment",
            model_version="sentiment-6995960c-2e26ff",
            request=request,
            labels=labels,
            rows=[[pred["probabilities"][label] for label in labels]],
        ),
        "infer parse": lambda: parse_infer(infer_raw, max_chars=5000),
        "infer render": lambda: orjson.dumps(
            {
                **pred,
                "model_version": "sentiment-6995960c-2e26ff",
                "release": "r0",
                "worker_id": "w0",
                "request_id": "01a22db2ff64db145fad69ac9b5fc9a2",
                "cache_hit": False,
                "idempotency_hit": False,
                "processing_time_ms": 1.234,
            }
        ),
    }
    best = {name: min(timeit.repeat(call, time.thread_time, number=20_000, repeat=5)) / 20_000 * 1e6
            for name, call in calls.items()}  # fmt: skip
    for name, us in best.items():
        print(f"{name:13s} {us:6.2f} µs")
    print(f"load average {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--per-client", type=int, default=40)
    parser.add_argument("--profile", choices=["infer", "v2"])
    parser.add_argument("--parts", action="store_true")
    args = parser.parse_args()
    if args.parts:
        parts()
        return
    import uvloop

    from falcon_platform.config.settings import Settings
    from falcon_platform.model.registry import ensure_model

    with tempfile.TemporaryDirectory(prefix="falcon-v2cost-") as tmp:  # removed at the end
        home = Path(tmp)
        os.environ["FALCON_HOME"] = str(home)
        os.environ.setdefault("FALCON_MODEL_PATH", str(ensure_model(Settings(home=home))))
        uvloop.run(main_async(args))


if __name__ == "__main__":
    main()
