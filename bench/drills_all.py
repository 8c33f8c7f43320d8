"""Every drill against a real deployment: `falcon up` with 3 workers (staging), Redis and
PostgreSQL as private servers, the canary and gate with short pauses; then `falcon drill run`
for each drill named (default: all), printing each one's output. The numbers of
docs/DRILLS.md come from this::

    .venv/bin/python bench/drills_all.py /tmp/drills            # all drills, ~5 minutes
    .venv/bin/python bench/drills_all.py /tmp/drills bad-deploy-forced kill-worker
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from falcon_platform.config.settings import Settings
from falcon_platform.stores import database
from falcon_platform.testing.servers import running_postgres, running_redis
from falcon_platform.testing.supervisor import start_supervisor, train_model

SPEC = """
workers:
  memory_limit_mb: 500
restart:
  initial_backoff: 500ms
  max_backoff: 1s
canary:
  steps:
    - {weight: 33, pause: 3s}
    - {weight: 67, pause: 2s}
  interval: 2s
  min_requests: 20
  abort_min_requests: 5
gates:
  load_test_duration: 3s
  load_test_rps: 20
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path, help="a new directory for the run and its reports")
    parser.add_argument("drills", nargs="*", default=["all"])
    args = parser.parse_args()
    base: Path = args.workdir
    base.mkdir(parents=True, exist_ok=True)
    model_dir = train_model(base / "model-home")
    with running_redis() as redis, running_postgres() as pg:
        home = base / "run" / "home"
        database.upgrade(Settings(home=home, database_url=pg.url))
        sup = start_supervisor(
            base / "run",
            workers=3,
            model_dir=model_dir,
            spec_yaml=SPEC,
            env={
                "FALCON_REDIS_URL": redis.url,
                "FALCON_DATABASE_URL": pg.url,
                "FALCON_PROFILE": "staging",
            },
        )
        try:
            for name in args.drills:
                started = time.monotonic()
                report = base / "reports" if name == "all" else base / "reports" / name
                done = sup.cli("drill", "run", name, "--report", str(report), timeout=3000)
                took = time.monotonic() - started
                print(f"{name}: exit {done.returncode}, {took:.1f} s", flush=True)
                print(done.stdout)
                print(done.stderr[-3000:], flush=True)
        finally:
            sup.stop()


if __name__ == "__main__":
    main()
