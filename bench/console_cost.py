"""What a web-console page costs the supervisor, measured against a real `falcon up` (issue 19).

Starts `falcon up` (2 workers) under a paced load of 20 requests/s, then fetches each console
page (and `GET /status` for comparison) ``--repeat`` times from loopback and prints the median
and the slowest time and the page's size. A page open in a browser is fetched every 2 s::

    .venv/bin/python bench/console_cost.py
    .venv/bin/python bench/console_cost.py --repeat 50

The numbers go into docs/ARCHITECTURE.md ("The web console").
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from falcon_platform.testing.supervisor import LoadGenerator, start_supervisor, train_model

PATHS = (
    "/console/",
    "/console/releases",
    "/console/slos",
    "/console/alerts",
    "/console/incidents",
    "/console/events",
    "/status",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        sup = start_supervisor(home, workers=2, model_dir=train_model(home / "model-home"))
        try:
            with (
                LoadGenerator(sup.url, rps=20),
                httpx.Client(base_url=sup.control_url, timeout=30) as client,
            ):
                time.sleep(5)  # some traffic in the SLI store
                for path in PATHS:
                    client.get(path)  # warm (templates compiled, readers opened)
                    took = []
                    for _ in range(args.repeat):
                        start = time.perf_counter()
                        answer = client.get(path)
                        took.append((time.perf_counter() - start) * 1000)
                        answer.raise_for_status()
                    print(
                        f"{path:20s} median {statistics.median(took):6.1f} ms  "
                        f"max {max(took):6.1f} ms  {len(answer.content):6d} bytes"
                    )
        finally:
            sup.stop()


if __name__ == "__main__":
    main()
