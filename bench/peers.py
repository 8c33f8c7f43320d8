"""Falcon side by side with a peer: MLServer serving the same model, measured in the same run.

    .venv/bin/python bench/peers.py                # installs MLServer once (~2 min), ~1 min
    .venv/bin/python bench/peers.py --json --duration 10

MLServer (the Open Inference Protocol's reference Python server) is installed from PyPI into
its own virtual environment (``~/.cache/falcon-bench/mlserver-<version>``, or ``--venv``), not
into Falcon's: ``mlserver``, ``mlserver-sklearn`` and the scikit-learn / skops versions that
Falcon trained with. It serves the same fitted pipeline, read from Falcon's skops artifact
(sha256 checked) and written as the ``model.joblib`` its scikit-learn runtime loads, with its
best settings for this model: adaptive batching on (``max_batch_size`` 64 = Falcon's,
``max_batch_time`` 5 ms) and ``predict_proba`` as the default output. Its default
``parallel_workers`` (inference in separate processes) crashes with uvloop 0.23, so it runs
with ``parallel_workers: 0`` (inference in the server process, as Falcon's worker does).

Every server is pinned to core 0 and wrk to core 1, 64 connections, the same wrk script and
text mix (``bench/wrk_infer.lua``, a unique text per request, v2 JSON bodies); the ceiling is
the bare ASGI function of ``bench/run.py``. Printed: requests/s, p50, p99, RSS and PSS at rest
and at peak, Falcon / ceiling, and Falcon / MLServer for throughput, p99 and memory.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from run import (
    BENCH,
    UVICORN,
    Result,
    attach_ratios,
    free_port,
    measure,
    measure_falcon,
    start,
    stop,
)

MLSERVER_VERSION = "1.7.1"
V2_PATH = "/v2/models/sentiment/infer"

# Runs inside MLServer's environment: Falcon's skops artifact -> model.joblib, checked first.
CONVERT = """
import hashlib, json, sys, joblib, skops.io
model_dir, out = sys.argv[1], sys.argv[2]
meta = json.load(open(f"{model_dir}/metadata.json"))
data = open(f"{model_dir}/{meta['artifact']}", "rb").read()
assert hashlib.sha256(data).hexdigest() == meta["sha256"], "artifact does not match metadata"
estimator = skops.io.loads(data, trusted=skops.io.get_untrusted_types(data=data))
joblib.dump(estimator, out)
"""


def ensure_venv(venv: Path, model_dir: Path) -> Path:
    """MLServer's own environment, created once; returns its python."""
    python = venv / "bin" / "python"
    marker = venv / ".falcon-bench-ready"
    if marker.exists():
        return python
    meta = json.loads((model_dir / "metadata.json").read_text())
    versions = meta.get("library_versions", {})
    packages = [f"mlserver=={MLSERVER_VERSION}", f"mlserver-sklearn=={MLSERVER_VERSION}"]
    packages += [f"{name}=={versions[name]}" for name in ("scikit-learn", "skops")
                 if versions.get(name, "unknown") != "unknown"]  # fmt: skip
    print(f"installing {' '.join(packages)} into {venv} (once) ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *packages], check=True)
    marker.write_text(" ".join(packages) + "\n")
    return python


def mlserver_dir(python: Path, model_dir: Path, root: Path, port: int) -> Path:
    """settings.json + a model directory with model-settings.json and model.joblib."""
    model = root / "sentiment"
    model.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(python), "-c", CONVERT, str(model_dir), str(model / "model.joblib")],
                   check=True)  # fmt: skip
    settings = {"http_port": port, "grpc_port": free_port(), "metrics_port": free_port(),
                "parallel_workers": 0, "debug": False}  # fmt: skip
    (root / "settings.json").write_text(json.dumps(settings))
    model_settings = {
        "name": "sentiment",
        "implementation": "mlserver_sklearn.SKLearnModel",
        "max_batch_size": 64,
        "max_batch_time": 0.005,
        "parameters": {"uri": "./model.joblib", "extra": {"predict_fn": "predict_proba"}},
    }
    (model / "model-settings.json").write_text(json.dumps(model_settings))
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per scenario")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before each")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--home", type=Path, default=None, help="FALCON_HOME (default: temp)")
    parser.add_argument("--venv", type=Path, default=None, help="MLServer's environment")
    args = parser.parse_args()
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: run `make system-deps` (Debian package {tool})")

    from falcon_platform.config.settings import Settings
    from falcon_platform.model.registry import ensure_model

    home = args.home or Path(tempfile.mkdtemp(prefix="falcon-peers-"))
    model_dir = Path(os.environ.get("FALCON_MODEL_PATH") or ensure_model(Settings(home=home)))
    venv = args.venv or Path.home() / ".cache" / "falcon-bench" / f"mlserver-{MLSERVER_VERSION}"
    python = ensure_venv(venv, model_dir)
    env = {**os.environ, "FALCON_HOME": str(home), "FALCON_MODEL_PATH": str(model_dir)}
    results: list[Result] = []

    port = free_port()
    print("bare ASGI ceiling ...", file=sys.stderr)
    proc = start([*UVICORN, "--port", str(port), "--app-dir", str(BENCH), "bare_asgi:app"], env,
                 home / "bare.log", f"http://127.0.0.1:{port}/")  # fmt: skip
    try:
        results += measure("bare-asgi", proc.pid, f"http://127.0.0.1:{port}/infer",
                           [("infer", "unique")], args)  # fmt: skip
    finally:
        stop(proc)

    print("falcon ...", file=sys.stderr)
    got, _ = measure_falcon("falcon /infer", env, home / "falcon.log",
                            [("/infer", "infer", "unique"), (V2_PATH, "v2", "unique")],
                            args)  # fmt: skip
    results += got

    print(f"MLServer {MLSERVER_VERSION} ...", file=sys.stderr)
    port = free_port()
    root = mlserver_dir(python, model_dir, home / "mlserver", port)
    mlserver = [str(venv / "bin" / "mlserver"), "start", str(root)]
    proc = start(mlserver, {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"},
                 home / "mlserver.log", f"http://127.0.0.1:{port}/v2/health/ready")  # fmt: skip
    try:
        results += measure(f"mlserver {MLSERVER_VERSION} v2", proc.pid,
                           f"http://127.0.0.1:{port}{V2_PATH}", [("v2", "unique")], args)  # fmt: skip
    finally:
        stop(proc)

    attach_ratios(results)
    report = comparison(results)
    if args.json:
        print(json.dumps({"connections": args.connections, "duration_s": args.duration,
                          "results": [asdict(r) for r in results], "falcon_vs_mlserver": report},
                         indent=2))  # fmt: skip
        return
    print(f"\n{args.connections} connections, {args.duration:g} s per scenario, every server on "
          "core 0, wrk on core 1, unique texts\n")  # fmt: skip
    print(f"{'target':<24} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>8} {'ratio':>7} {'cpu us':>7} "
          f"{'RSS rest/peak MB':>17} {'PSS rest/peak MB':>17} {'non-2xx':>7}")  # fmt: skip
    for r in results:
        print(f"{r.target:<24} {r.rps:>9.0f} {r.p50_ms:>7.2f} {r.p99_ms:>8.2f} "
              f"{r.ratio_to_ceiling:>7.1%} {r.cpu_us_per_request:>7.1f} "
              f"{r.rest_rss_mb:>8.0f}/{r.peak_rss_mb:<8.0f} {r.rest_pss_mb:>8.0f}/"
              f"{r.peak_pss_mb:<8.0f} {r.non_2xx + r.socket_errors:>7}")  # fmt: skip
    print("\nFalcon / MLServer (same v2 request):")
    for key, value in report.items():
        print(f"  {key:<28} {value:.2f}")


def comparison(results: list[Result]) -> dict[str, Any]:
    by_target = {r.target: r for r in results}
    falcon = by_target["falcon /v2 infer"]
    peer = next(r for r in results if r.target.startswith("mlserver"))
    return {
        "throughput (x)": falcon.rps / peer.rps,
        "p99 (x, lower is better)": falcon.p99_ms / peer.p99_ms,
        "peak RSS (x)": falcon.peak_rss_mb / peer.peak_rss_mb,
        "peak PSS (x)": falcon.peak_pss_mb / peer.peak_pss_mb,
        "CPU per request (x)": falcon.cpu_us_per_request / peer.cpu_us_per_request,
    }


if __name__ == "__main__":
    main()
