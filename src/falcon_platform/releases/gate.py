"""The load gate: one worker of the new release on a private port takes a short synthetic load
before any user sees it; errors, p99 and memory growth decide (``judge_load_gate``, pure)::

    result = await run_load_gate(argv, env, gate=spec.gates, limit_mb=512, release="r3")
    result.passed, result.checks, result.numbers

The worker is ``falcon worker --host 127.0.0.1 --port <free>`` started with exactly the
arguments and environment the supervisor gives the release's workers; it is stopped after the
run (SIGKILL as soon as its memory reaches the limit: the gate has seen enough).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from falcon_platform.config.spec import GateSpec
from falcon_platform.loadtest import LoadOptions, LoadPlan, run_load_async
from falcon_platform.loadtest.memory import MB, MemorySample, fit_slope

_SAMPLE_S = 0.25


@dataclass(frozen=True)
class LoadGateNumbers:
    """What the run measured (``None``: not measured)."""

    requests: int
    errors: int
    p99_ms: float | None
    rss_start_mb: float | None
    rss_peak_mb: float | None
    slope_mb_per_min: float | None
    reached_limit: bool
    duration_s: float
    boot_error: str | None = None

    @property
    def error_ratio(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    def to_dict(self) -> dict[str, Any]:
        def r(x: float | None) -> float | None:
            return round(x, 3) if x is not None and math.isfinite(x) else None

        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_ratio": r(self.error_ratio),
            "p99_ms": r(self.p99_ms),
            "rss_start_mb": r(self.rss_start_mb),
            "rss_peak_mb": r(self.rss_peak_mb),
            "memory_slope_mb_per_min": r(self.slope_mb_per_min),
            "reached_limit": self.reached_limit,
            "duration_s": r(self.duration_s),
            "boot_error": self.boot_error,
        }


@dataclass(frozen=True)
class LoadGateResult:
    passed: bool
    checks: list[dict[str, Any]] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)

    @property
    def failures(self) -> list[str]:
        return [str(c["detail"]) for c in self.checks if not c["passed"]]


def judge_load_gate(
    n: LoadGateNumbers, gate: GateSpec, *, limit_mb: float | None
) -> LoadGateResult:
    """Pure: each check with its numbers. A release whose memory would reach the limit within
    ``gate.memory_horizon`` (or did during the run) is refused with the measured slope."""
    checks: list[dict[str, Any]] = []

    def check(name: str, passed: bool, detail: str) -> None:
        checks.append({"check": name, "passed": passed, "detail": detail})

    if n.boot_error is not None:
        check("boot", False, f"the release's worker did not become ready: {n.boot_error}")
        return LoadGateResult(False, checks, n.to_dict())
    ratio = n.error_ratio
    if ratio is None:
        check("requests", False, "no request was answered during the load test")
    else:
        check("error_ratio", ratio <= gate.max_error_ratio,
              f"error ratio {ratio:.2%} ({n.errors}/{n.requests}) "
              f"{'<=' if ratio <= gate.max_error_ratio else '>'} {gate.max_error_ratio:.2%}")  # fmt: skip
    if n.p99_ms is not None:
        ok = n.p99_ms <= gate.max_p99_ms
        check("p99_ms", ok,
              f"p99 {n.p99_ms:.0f} ms {'<=' if ok else '>'} {gate.max_p99_ms:g} ms")  # fmt: skip
    slope = n.slope_mb_per_min
    slope_text = f"{slope:.0f} MB/min" if slope is not None else "unmeasured"
    if n.reached_limit:
        check("memory_limit", False,
              f"memory reached the {limit_mb:.0f} MB limit during the load test "
              f"(peak {n.rss_peak_mb or 0:.0f} MB, growing {slope_text})")  # fmt: skip
    if n.rss_start_mb is not None and n.rss_peak_mb is not None:
        growth = n.rss_peak_mb - n.rss_start_mb
        ok = growth <= gate.max_rss_growth_mb
        check("rss_growth_mb", ok,
              f"memory grew {growth:.0f} MB in {n.duration_s:.0f} s "
              f"{'<=' if ok else '>'} {gate.max_rss_growth_mb:g} MB")  # fmt: skip
    growth_mb = (
        n.rss_peak_mb - n.rss_start_mb
        if n.rss_peak_mb is not None and n.rss_start_mb is not None
        else 0.0
    )
    # A few MB in a short run is a fresh worker warming up, not a trend to project.
    if (
        slope is not None
        and limit_mb
        and n.rss_peak_mb is not None
        and not n.reached_limit
        and growth_mb > gate.memory_noise_mb
    ):
        seconds = (limit_mb - n.rss_peak_mb) / slope * 60.0 if slope > 0 else math.inf
        ok = seconds > gate.memory_horizon
        shown = "never" if math.isinf(seconds) else f"in {seconds / 60:.1f} min"
        check("time_to_memory_limit", ok,
              f"memory slope {slope_text}: the {limit_mb:.0f} MB limit {shown} "
              f"({'beyond' if ok else 'within'} the {gate.memory_horizon / 60:g} min "
              "horizon)")  # fmt: skip
    return LoadGateResult(all(c["passed"] for c in checks), checks, n.to_dict())


@dataclass(frozen=True)
class ModelFacts:
    """What the model gate compares, from a model directory's ``metadata.json``."""

    sha256: str
    labels: tuple[str, ...]
    score: float | None  # macro F1 on the model's own held-out split, as trained


def model_facts(model_dir: Path) -> ModelFacts:
    """Read the facts (``ModelError`` with the fix when the metadata is missing or invalid)."""
    from falcon_platform.model.artifact import read_metadata

    meta = read_metadata(model_dir)
    score = meta.metrics.get("macro_f1")
    return ModelFacts(meta.sha256, tuple(meta.labels),
                      float(score) if isinstance(score, int | float) else None)  # fmt: skip


def judge_model_gate(
    stable: ModelFacts | None, new: ModelFacts, gate: GateSpec
) -> list[dict[str, Any]]:
    """Pure: the labels must not change (unless ``gate.allow_label_change``) and the held-out
    score must not be worse than the stable model's by more than ``gate.max_score_drop``."""
    if stable is None:
        return [{"check": "model", "passed": True,
                 "detail": "no stable model to compare with"}]  # fmt: skip
    if new.sha256 == stable.sha256:
        return [{"check": "model", "passed": True,
                 "detail": f"same model as stable (sha256 {new.sha256[:12]})"}]  # fmt: skip
    checks: list[dict[str, Any]] = []
    added = sorted(set(new.labels) - set(stable.labels))
    removed = sorted(set(stable.labels) - set(new.labels))
    same = not added and not removed
    checks.append({
        "check": "model_labels",
        "passed": same or gate.allow_label_change,
        "detail": "labels unchanged" if same else
        f"labels changed: added {added}, removed {removed}"
        + ("" if gate.allow_label_change else " (set gates.allow_label_change to allow it)"),
    })  # fmt: skip
    if new.score is not None and stable.score is not None:
        drop = stable.score - new.score
        ok = drop <= gate.max_score_drop
        checks.append({
            "check": "model_score",
            "passed": ok,
            "detail": f"held-out macro F1 {new.score:.3f} vs stable's {stable.score:.3f} "
            f"(drop {drop:+.3f} {'<=' if ok else '>'} {gate.max_score_drop:g})",
        })  # fmt: skip
    else:
        checks.append({"check": "model_score", "passed": True,
                       "detail": "no held-out score recorded for one of the models"})  # fmt: skip
    return checks


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


async def _wait_ready(
    url: str, proc: asyncio.subprocess.Process, timeout_s: float, log_path: Path
) -> str | None:
    """None once ``/readyz`` answers 200; else why not (exited, or timed out)."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                text = await asyncio.to_thread(log_path.read_text, errors="replace")
                tail = text.strip().splitlines()[-3:]
                return f"exited with {proc.returncode}: {' | '.join(tail)}"
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url + "/readyz")).status_code == 200:
                    return None
            await asyncio.sleep(0.2)
    return f"not ready within {timeout_s:g} s"


async def run_load_gate(
    argv: list[str],
    env: dict[str, str],
    *,
    gate: GateSpec,
    limit_mb: float | None,
    release: str,
    boot_timeout_s: float = 120.0,
) -> LoadGateResult:
    """Start the release's worker on a private port, load it, judge, stop it."""
    port = _free_port()
    env = {**env, "FALCON_WORKER_ID": f"gate-{release}", "FALCON_RELEASE": release}
    command = [sys.executable, "-m", "falcon_platform.cli", "worker", "--host", "127.0.0.1",
               "--port", str(port), *argv]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="falcon-gate-") as tmp:
        log_path = Path(tmp) / "worker.log"
        with log_path.open("wb") as log_file:
            proc = await asyncio.create_subprocess_exec(
                *command, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=log_file,
                stderr=asyncio.subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            numbers = await _measure(proc, port, gate, limit_mb, boot_timeout_s, log_path)
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGKILL)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), timeout=10)
    return judge_load_gate(numbers, gate, limit_mb=limit_mb)


async def _measure(
    proc: asyncio.subprocess.Process,
    port: int,
    gate: GateSpec,
    limit_mb: float | None,
    boot_timeout_s: float,
    log_path: Path,
) -> LoadGateNumbers:
    url = f"http://127.0.0.1:{port}"
    why = await _wait_ready(url, proc, boot_timeout_s, log_path)
    if why is not None:
        return LoadGateNumbers(0, 0, None, None, None, None, False, 0.0, boot_error=why)
    stop = threading.Event()
    samples: list[MemorySample] = []
    reached = False
    t0 = time.monotonic()

    async def sample_memory() -> None:
        nonlocal reached
        while not stop.is_set():
            rss = _rss_bytes(proc.pid)
            if rss is not None:
                samples.append(MemorySample(time.monotonic() - t0, rss, 0))
                if limit_mb and rss >= limit_mb * MB:
                    reached = True
                    stop.set()  # enough: it would be OOM-killed; stop the load
                    with contextlib.suppress(ProcessLookupError):
                        proc.send_signal(signal.SIGKILL)
                    return
            await asyncio.sleep(_SAMPLE_S)

    sampler = asyncio.create_task(sample_memory())
    options = LoadOptions(texts="unique", connections=64, timeout_s=5.0)
    plan = LoadPlan.constant(gate.load_test_rps, gate.load_test_duration)
    try:
        result = await run_load_async(plan, url, options=options, stop=stop)
    finally:
        stop.set()
        await sampler
    fit = fit_slope(samples)
    sent = result.sent
    errors = result.errors
    if reached:  # requests cut short by the kill are the gate's doing, not the release's
        errors = sum(n for code, n in result.statuses.items() if not 200 <= code < 300)
    return LoadGateNumbers(
        requests=sent,
        errors=errors,
        p99_ms=result.latency.p99_ms if result.responses else None,
        rss_start_mb=samples[0].bytes / MB if samples else None,
        rss_peak_mb=max(s.bytes for s in samples) / MB if samples else None,
        slope_mb_per_min=fit.slope_mb_per_min if fit is not None else None,
        reached_limit=reached,
        duration_s=time.monotonic() - t0,
    )
