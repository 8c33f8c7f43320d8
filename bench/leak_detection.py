"""How fast Falcon notices the seed's leak, measured with real processes (issue 11).

Runs `falcon up` (2 workers, 512 MB limit, the default spec's alerts evaluated by the
supervisor every 5 s) with the seed's fault, `FALCON_FAULTS=leak_mb_per_request=5`, under a
paced load of 20 requests/s (the seed's rate), once with the default soft limit (80%) and once
with it off, and prints from the journal, in seconds after the load started: the first recycle,
the first OOM kill, when each memory alert first fired, how many recycles and OOM kills there
were, and what the clients saw::

    .venv/bin/python bench/leak_detection.py                  # 2 x 180 s
    .venv/bin/python bench/leak_detection.py --seconds 60 --json

The numbers go into README.md ("What the alerts catch, and when") and docs/CAPACITY_PLAN.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from falcon_platform.testing.supervisor import LoadGenerator, start_supervisor, train_model

ALERTS = (
    "FalconWorkerMemoryGrowth",
    "FalconWorkerRecycling",
    "FalconWorkerOOMKilled",
    "FalconWorkerMemoryHigh",
    "FalconCrashLoop",
    "FalconHighErrorRate",
)


def run_once(base: Path, model_dir: Path, *, soft_percent: int, seconds: float) -> dict[str, Any]:
    workdir = base / f"soft-{soft_percent}"
    workdir.mkdir()
    env = {
        "FALCON_FAULTS": "leak_mb_per_request=5",
        "FALCON_MEMORY_LIMIT_MB": "512",
        "FALCON_MEMORY_SOFT_LIMIT_PERCENT": str(soft_percent),
        "FALCON_SLI_SCRAPE_INTERVAL_S": "1",
    }
    sup = start_supervisor(workdir, workers=2, model_dir=model_dir, env=env)
    try:
        started_wall = time.time()
        with LoadGenerator(sup.url, rps=20, timeout=10.0) as load:
            time.sleep(seconds)
        result = load.result()
        events = sup.events()
        status = sup.status()
    finally:
        sup.stop()

    def first(kind: str, predicate: Any = lambda e: True) -> float | None:
        times = [e["ts"] for e in events if e["kind"] == kind and predicate(e)]
        return round(min(times) - started_wall, 1) if times else None

    fired = {
        name: first("alert_firing", lambda e, n=name: e["details"].get("name") == n)
        for name in ALERTS
    }
    exits = [e for e in events if e["kind"] == "worker_exited"]
    return {
        "soft_limit_percent": soft_percent,
        "seconds": seconds,
        "first_recycle_s": first("limit_recycle"),
        "first_oom_kill_s": first("worker_exited", lambda e: bool(e["details"].get("oom_killed"))),
        "recycles": sum(1 for e in events if e["kind"] == "limit_recycle"),
        "oom_kills": sum(1 for e in exits if e["details"].get("oom_killed")),
        "alerts_first_fired_s": fired,
        "status_restarts": sum(w["restarts"] for w in status["workers"]),
        "status_recycles": sum(w.get("recycles", 0) for w in status["workers"]),
        "requests": result.total,
        "failed": result.failed,
        "statuses": result.statuses,
        "errors": result.errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--soft", type=int, action="append", help="soft limit(s) in %% to run (default 80 and 0)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="falcon-leak-") as tmp:
        base = Path(tmp)
        model_dir = train_model(base / "model-home")
        runs = [
            run_once(base, model_dir, soft_percent=p, seconds=args.seconds)
            for p in (args.soft or [80, 0])
        ]
    if args.json:
        print(json.dumps(runs, indent=2))
        return
    for run in runs:
        print(
            f"soft limit {run['soft_limit_percent']}% ({run['seconds']:.0f} s at 20 req/s, "
            f"5 MB leaked per request, 512 MB limit, 2 workers):"
        )
        print(
            f"  first recycle {run['first_recycle_s']} s, first OOM kill {run['first_oom_kill_s']} s;"
            f" {run['recycles']} recycles, {run['oom_kills']} OOM kills; `falcon status`: "
            f"restarts {run['status_restarts']}, recycles {run['status_recycles']}"
        )
        for name, at in run["alerts_first_fired_s"].items():
            print(f"  {name:<26} {'never' if at is None else f'{at} s'}")
        print(
            f"  clients: {run['requests']} requests, {run['failed']} failed, "
            f"statuses {run['statuses']}, errors {run['errors']}"
        )


if __name__ == "__main__":
    main()
