"""CPU per row of shipping request-log segments into the embedded SQLite, two ways alternately.

    .venv/bin/python bench/ship_cost.py                  # 60 segments of 1,000 rows, 3 rounds
    taskset -c 1 .venv/bin/python bench/ship_cost.py --segments 30 --rounds 5

``json``: the segment as JSON arrays that SQLite unpacks (``json_each`` + ``json_extract`` per
column; what PostgreSQL still gets, and SQLite's fallback). ``values``: multi-row
``INSERT ... VALUES`` with the lines decoded by orjson (what SQLite gets now). Each round ships
the same segments into a fresh database per way (so both grow alike) and measures the shipping
thread's CPU time (``thread_time``), which other processes on a shared machine move less than
wall time. Rows are varied like real ones (time-ordered ids, unique texts).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine

from falcon_platform.config.settings import Settings
from falcon_platform.serving.errors import new_request_id
from falcon_platform.stores.base import RequestLogRecord
from falcon_platform.stores.database import make_engine, upgrade
from falcon_platform.stores.segments import encode_record
from falcon_platform.stores.shipper import ship_bulk, ship_values


def segment(rows: int, seed: int) -> list[bytes]:
    lines = []
    for i in range(rows):
        text = f"review {seed}-{i}: great screen but the battery died"
        record = RequestLogRecord(
            request_id=new_request_id(), ts=time.time(), worker="w0", release="r1",
            model_version="sentiment-2026-11-30-0123abcd", endpoint="/infer", status_code=200,
            latency_ms=3.0 + i % 17, input_hash=hashlib.sha256(text.encode()).hexdigest(),
            input_length=len(text), prediction="positive", confidence=0.8125,
            client_id="0123456789abcdef",
        )  # fmt: skip
        lines.append(encode_record(record).rstrip(b"\n"))
    return lines


WAYS: dict[str, Callable[[Engine, list[bytes]], bool]] = {
    "json": lambda engine, lines: ship_bulk(engine, lines, batch=1000),
    "values": ship_values,
}


def ship_all(way: str, segments: list[list[bytes]]) -> float:
    """CPU microseconds per row to ship ``segments`` into a fresh database."""
    with tempfile.TemporaryDirectory(prefix="falcon-ship-cost-") as home:
        settings = Settings(home=Path(home))
        upgrade(settings)
        engine = make_engine(settings)
        try:
            started = time.thread_time()
            for lines in segments:
                if not WAYS[way](engine, lines):
                    raise SystemExit(f"{way}: a segment was refused")
            spent = time.thread_time() - started
        finally:
            engine.dispose()
    return spent * 1e6 / sum(len(lines) for lines in segments)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--segments", type=int, default=60)
    parser.add_argument("--rows", type=int, default=1000, help="rows per segment")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    segments = [segment(args.rows, k) for k in range(args.segments)]
    results: dict[str, list[float]] = {way: [] for way in WAYS}
    for _ in range(args.rounds):
        for way in WAYS:
            results[way].append(ship_all(way, segments))
    for way, runs in results.items():
        each = " / ".join(f"{us:.1f}" for us in runs)
        print(f"{way:<7} median {statistics.median(runs):5.1f} us CPU per row ({each})")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
