"""The server's side of a run, read from the supervisor's control API (pure parts + a sampler).

Every ``interval_s`` a daemon thread reads ``GET /status`` (per-worker memory as the
supervisor samples it for the limits, restarts, process ids, the limit) and ``GET /metrics``
(OOM kills, queue depth, requests shed as overloaded). ``summarise`` turns the samples into
per-worker memory slopes and projected times to the limit::

    sampler = ServerSampler(ControlClient.from_settings(settings), t0=engine.t0, interval_s=1)
    sampler.start(); ...; samples = sampler.stop()
    side = summarise(samples)         # ServerSide: workers, restarts, oom_kills, shed_requests
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from prometheus_client.parser import text_string_to_metric_families

from falcon_platform.errors import FalconError
from falcon_platform.loadtest.memory import (
    MB,
    MemorySample,
    SlopeFit,
    fit_slope,
    minutes_to_limit,
)
from falcon_platform.observability import names

_WANTED = (names.WORKER_OOM_KILLS, names.QUEUE_DEPTH, names.ERRORS)


class ControlSource(Protocol):
    """What the sampler needs of ``client.control.ControlClient``."""

    def status(self) -> dict[str, Any]: ...

    def metrics(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One reading of the control API, ``t`` seconds after the run started."""

    t: float
    workers: tuple[WorkerReading, ...]
    oom_kills: Mapping[str, float]  # per worker (supervisor counter: never resets)
    queue_depth: Mapping[str, float]  # per worker
    shed: Mapping[str, float]  # per worker (worker counter: resets when it restarts)


@dataclass(frozen=True, slots=True)
class WorkerReading:
    worker: str
    pid: int | None
    rss_bytes: int | None
    limit_bytes: int | None
    restarts: int
    state: str


def parse_status(body: Mapping[str, Any]) -> tuple[WorkerReading, ...]:
    """Pure: the ``workers`` rows of ``GET /status``."""
    rows = []
    for w in body.get("workers", []):
        rows.append(
            WorkerReading(
                worker=str(w.get("worker")),
                pid=w.get("pid"),
                rss_bytes=w.get("rss_bytes"),
                limit_bytes=w.get("memory_limit_bytes"),
                restarts=int(w.get("restarts") or 0),
                state=str(w.get("state", "")),
            )
        )
    return tuple(rows)


def parse_metrics(text: str) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Pure: (OOM kills, queue depth, overloaded errors) per worker from an exposition.

    Only the few lines needed are handed to prometheus_client's parser: the aggregated
    exposition has hundreds of series, and the sampler shares the generator's process.
    """
    keep = [
        line for line in text.splitlines() if line.startswith(_WANTED) and not line.startswith("#")
    ]
    oom: dict[str, float] = {}
    queue: dict[str, float] = {}
    shed: dict[str, float] = {}
    for family in text_string_to_metric_families("\n".join(keep) + "\n"):
        for sample in family.samples:
            worker = sample.labels.get("worker", "")
            if sample.name == names.WORKER_OOM_KILLS:
                oom[worker] = oom.get(worker, 0.0) + sample.value
            elif sample.name == names.QUEUE_DEPTH:
                queue[worker] = queue.get(worker, 0.0) + sample.value
            elif sample.name == names.ERRORS and sample.labels.get("type") == "overloaded":
                shed[worker] = shed.get(worker, 0.0) + sample.value
    return oom, queue, shed


def counter_increase(values: Sequence[float]) -> float:
    """Increase of a counter over samples, counting a drop as a reset (as Prometheus does)."""
    total = 0.0
    for before, after in itertools.pairwise(values):
        total += after - before if after >= before else after
    return total


@dataclass(frozen=True, slots=True)
class WorkerMemory:
    worker: str
    samples: tuple[tuple[float, float], ...]  # (seconds, MB)
    fit: SlopeFit | None
    limit_mb: float | None
    last_mb: float | None
    max_mb: float | None
    time_to_limit_min: float  # inf = never at this slope
    restarts: int
    oom_kills: int


@dataclass(frozen=True, slots=True)
class ServerSide:
    """What the server did during the run; ``reachable`` False says why it is missing."""

    reachable: bool
    why: str = ""
    workers: tuple[WorkerMemory, ...] = ()
    restarts: int = 0
    oom_kills: int = 0
    shed_requests: int = 0
    queue_depth_max: float = 0.0
    samples: int = 0
    series: tuple[tuple[float, float, float], ...] = field(default=())  # (t, queue, shed so far)

    @property
    def steepest_slope(self) -> float | None:
        slopes = [w.fit.slope_mb_per_min for w in self.workers if w.fit is not None]
        return max(slopes) if slopes else None

    @property
    def time_to_limit_min(self) -> float | None:
        times = [w.time_to_limit_min for w in self.workers if w.fit is not None]
        return min(times) if times else None

    @property
    def memory_max_mb(self) -> float | None:
        peaks = [w.max_mb for w in self.workers if w.max_mb is not None]
        return max(peaks) if peaks else None


def summarise(snapshots: Sequence[Snapshot], *, warmup_s: float = 0.0) -> ServerSide:
    """Pure: per-worker memory fits and the run's restarts, OOM kills and shed requests.

    ``warmup_s``: memory samples before it are left out of the slope (not of the maximum).
    """
    if not snapshots:
        return ServerSide(False, "no sample of the control API was taken")
    workers = sorted({r.worker for s in snapshots for r in s.workers})
    rows = []
    for name in workers:
        readings = [(s.t, r) for s in snapshots for r in s.workers if r.worker == name]
        mem = [
            MemorySample(t, r.rss_bytes, r.pid or 0)
            for t, r in readings
            if r.rss_bytes is not None and r.pid is not None
        ]
        fit = fit_slope([m for m in mem if m.t >= warmup_s])
        limit = next((r.limit_bytes for _, r in reversed(readings) if r.limit_bytes), None)
        last = mem[-1].bytes / MB if mem else None
        oom_series = [s.oom_kills.get(name, 0.0) for s in snapshots]
        restarts = readings[-1][1].restarts - readings[0][1].restarts if readings else 0
        rows.append(
            WorkerMemory(
                worker=name,
                samples=tuple((m.t, m.bytes / MB) for m in mem),
                fit=fit,
                limit_mb=limit / MB if limit else None,
                last_mb=last,
                max_mb=max(m.bytes for m in mem) / MB if mem else None,
                time_to_limit_min=(
                    minutes_to_limit(last, limit / MB if limit else None, fit.slope_mb_per_min)
                    if fit is not None and last is not None
                    else math.inf
                ),
                restarts=max(0, restarts),
                oom_kills=round(counter_increase(oom_series)),
            )
        )
    shed_total = sum(
        counter_increase([s.shed.get(name, 0.0) for s in snapshots]) for name in workers
    )
    series = []
    shed_so_far = 0.0
    for before, after in zip([snapshots[0], *snapshots], snapshots, strict=False):
        for name in workers:
            shed_so_far += counter_increase([before.shed.get(name, 0.0), after.shed.get(name, 0.0)])
        series.append((after.t, sum(after.queue_depth.values()), shed_so_far))
    return ServerSide(
        reachable=True,
        workers=tuple(rows),
        restarts=sum(w.restarts for w in rows),
        oom_kills=sum(w.oom_kills for w in rows),
        shed_requests=round(shed_total),
        queue_depth_max=max((q for _, q, _ in series), default=0.0),
        samples=len(snapshots),
        series=tuple(series),
    )


class ServerSampler:
    """Reads the control API every ``interval_s`` in a daemon thread (off the event loop)."""

    def __init__(self, source: ControlSource, *, t0: float, interval_s: float = 1.0) -> None:
        self.source, self.t0, self.interval_s = source, t0, interval_s
        self.snapshots: list[Snapshot] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> Snapshot | None:
        t = time.perf_counter() - self.t0
        try:
            workers = parse_status(self.source.status())
            oom, queue, shed = parse_metrics(self.source.metrics())
        except (FalconError, OSError, ValueError) as exc:
            self.errors.append(f"{t:.1f}s: {exc}")
            return None
        snap = Snapshot(t, workers, oom, queue, shed)
        self.snapshots.append(snap)
        return snap

    def rebase(self, t0: float) -> None:
        """Measure from ``t0`` from now on; earlier samples get negative times."""
        shift = self.t0 - t0
        self.snapshots = [replace(s, t=s.t + shift) for s in self.snapshots]
        self.t0 = t0

    @property
    def latest(self) -> Snapshot | None:
        return self.snapshots[-1] if self.snapshots else None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="falcon-loadtest-sampler",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    def _run(self) -> None:
        next_at = time.perf_counter()
        while not self._stop.is_set():
            self.sample()
            next_at += self.interval_s
            self._stop.wait(max(0.0, next_at - time.perf_counter()))

    def stop(self) -> list[Snapshot]:
        """Stop, take one last sample (what the run ended with) and return them all."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
        self.sample()
        return list(self.snapshots)
